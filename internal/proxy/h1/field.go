package h1

// MaxFields is the most field lines a head may hold; one more is
// ErrTooManyFields. 128 is well above what browsers send (about 20) and
// bounds the work per head whatever the buffer size.
const MaxFields = 128

// Field is one field line of a head. All slices alias the parsed buffer
// and are valid only while that buffer is unchanged.
type Field struct {
	// Name is the field name as written, case preserved.
	Name []byte
	// Value is the field value without its leading and trailing SP/HTAB.
	Value []byte
	// Line is the whole line as received, including its CRLF: what a proxy
	// forwards verbatim.
	Line []byte

	id fieldID
}

// fieldID names the fields the parser interprets; everything else is
// idOther and is only validated.
type fieldID uint8

const (
	idOther fieldID = iota
	idHost
	idContentLength
	idTransferEncoding
	idConnection
	idUpgrade
	idExpect
	idTrailer
	idKeepAlive
	idProxyConnection
	idTE
	idProxyAuthenticate
	idProxyAuthorization
)

// lookupField finds the fieldID of a name, case-insensitively. Switching
// on the length first leaves at most two comparisons per name.
func lookupField(name []byte) fieldID {
	switch len(name) {
	case 2:
		return pick(name, "te", idTE)
	case 4:
		return pick(name, "host", idHost)
	case 6:
		return pick(name, "expect", idExpect)
	case 7:
		if id := pick(name, "upgrade", idUpgrade); id != idOther {
			return id
		}
		return pick(name, "trailer", idTrailer)
	case 10:
		if id := pick(name, "connection", idConnection); id != idOther {
			return id
		}
		return pick(name, "keep-alive", idKeepAlive)
	case 14:
		return pick(name, "content-length", idContentLength)
	case 16:
		return pick(name, "proxy-connection", idProxyConnection)
	case 17:
		return pick(name, "transfer-encoding", idTransferEncoding)
	case 18:
		return pick(name, "proxy-authenticate", idProxyAuthenticate)
	case 19:
		return pick(name, "proxy-authorization", idProxyAuthorization)
	}
	return idOther
}

func pick(name []byte, s string, id fieldID) fieldID {
	if equalFold(name, s) {
		return id
	}
	return idOther
}

// HopByHopFields are the fields that are hop-by-hop by themselves (not
// counting those a Connection field names): RFC 9110 §7.6.1's and the
// proxy credentials. A proxy drops them before forwarding, except framing
// it relays as it is. It is the list hopByHop below recognizes.
var HopByHopFields = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authorization",
}

// hopByHop reports whether id is in the static hop-by-hop list: the
// fields of RFC 9110 §7.6.1 (Connection, Proxy-Connection, Keep-Alive, TE,
// Transfer-Encoding, Upgrade) and the proxy credentials of RFC 9110
// §11.7.1 and §11.7.2, which address the proxy, not the origin.
func (id fieldID) hopByHop() bool {
	switch id {
	case idConnection, idKeepAlive, idProxyConnection, idTE, idTransferEncoding,
		idUpgrade, idProxyAuthenticate, idProxyAuthorization:
		return true
	}
	return false
}

// parseField parses the field line starting at buf[i] (RFC 9112 §5):
//
//	field-line = field-name ":" OWS field-value OWS CRLF
//
// into f and returns the index just past its CRLF. Whitespace before the
// colon is an error (RFC 9112 §5.1 requires servers to reject it and
// proxies to remove it from responses; we forward raw lines, so we reject).
func parseField(buf []byte, i int, f *Field) (int, error) {
	start := i
	for i < len(buf) && isTchar(buf[i]) {
		i++
	}
	if i == len(buf) {
		return 0, ErrIncomplete
	}
	if c := buf[i]; c != ':' {
		return 0, nameError(c)
	}
	if i == start {
		return 0, errEmptyName
	}
	name := buf[start:i]
	i++
	for i < len(buf) && isWS(buf[i]) {
		i++
	}
	vs := i
	i = skipValue(buf, i)
	ve := i
	for ve > vs && isWS(buf[ve-1]) {
		ve--
	}
	end, err := lineEnd(buf, i, errFieldValueByte)
	if err != nil {
		return 0, err
	}
	f.Name, f.Value, f.Line, f.id = name, buf[vs:ve], buf[start:end], lookupField(name)
	return end, nil
}

// nameError says why c cannot follow a field name.
func nameError(c byte) error {
	switch c {
	case ' ', '\t':
		return errSpaceBeforeColon
	case '\r', '\n':
		return errNoColon
	}
	return errFieldNameByte
}

// lineEnd expects CRLF at buf[i] and returns the index after it. A byte
// other than CR there is reported as other.
func lineEnd(buf []byte, i int, other error) (int, error) {
	if i >= len(buf) {
		return 0, ErrIncomplete
	}
	switch buf[i] {
	case '\r':
		if i+1 >= len(buf) {
			return 0, ErrIncomplete
		}
		if buf[i+1] != '\n' {
			return 0, errBareCR
		}
		return i + 2, nil
	case '\n':
		return 0, errBareLF
	}
	return 0, other
}
