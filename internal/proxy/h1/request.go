package h1

import "bytes"

// maxEmptyLines is how many empty lines may precede a request line. RFC
// 9112 §2.2 asks servers to ignore at least one (old clients send a CRLF
// after a POST body); a few more cost nothing, an endless stream is not a
// client.
const maxEmptyLines = 4

// Request is a parsed request head. Its zero value is ready for Parse; a
// Request is meant to be pooled and reused. Parse must not run
// concurrently with any other use of the same Request; the read-only
// methods (Framing, Authority, HopByHop, ConnectionTokens) may run
// concurrently with each other. Every slice aliases the buffer last given
// to Parse and is valid only while that buffer is unchanged.
type Request struct {
	Head

	// Method is the method token, case-sensitive (RFC 9110 §9.1).
	Method []byte
	// Target is the request-target as received.
	Target []byte
	// Form is the form of Target.
	Form Form
	// Host is the value of the single Host field, nil when absent (only
	// HTTP/1.0 may omit it).
	Host []byte

	authority []byte // of an absolute-form target
}

// Parse parses the request head at the start of buf. It returns the
// length of the head, including any skipped leading empty lines and the
// final empty line; the body, if any, starts at buf[n].
//
// It returns ErrIncomplete while buf holds only part of a head that is
// not yet known to be bad, ErrTooManyFields, ErrVersion for a well-formed
// version other than HTTP/1.0 and HTTP/1.1, or an error matching
// ErrMalformed. After an error the fields of r are unspecified.
func (r *Request) Parse(buf []byte) (n int, err error) {
	r.reset()
	i, err := skipEmptyLines(buf)
	if err != nil {
		return 0, err
	}
	if i, err = r.parseRequestLine(buf, i); err != nil {
		return 0, err
	}
	if n, err = r.parseFields(buf, i, &r.Host); err != nil {
		return 0, err
	}
	if err = r.checkHead(); err != nil {
		return 0, err
	}
	return n, nil
}

func (r *Request) reset() {
	r.Head.reset()
	r.Method, r.Target, r.Host, r.authority = nil, nil, nil, nil
	r.Form = FormOrigin
}

// skipEmptyLines returns the index of the first byte after at most
// maxEmptyLines leading CRLFs.
func skipEmptyLines(buf []byte) (int, error) {
	i := 0
	for k := 0; ; k++ {
		if i >= len(buf) {
			return 0, ErrIncomplete
		}
		if buf[i] != '\r' && buf[i] != '\n' {
			return i, nil
		}
		if k == maxEmptyLines {
			return 0, errEmptyLines
		}
		next, err := lineEnd(buf, i, nil)
		if err != nil {
			return 0, err
		}
		i = next
	}
}

// parseRequestLine parses method SP request-target SP HTTP-version CRLF
// (RFC 9112 §3) with exactly one SP between parts.
func (r *Request) parseRequestLine(buf []byte, i int) (int, error) {
	s := i
	for i < len(buf) && isTchar(buf[i]) {
		i++
	}
	if i == len(buf) {
		return 0, ErrIncomplete
	}
	if buf[i] != ' ' || i == s {
		return 0, errMethod
	}
	r.Method = buf[s:i]
	i++
	s = i
	i = skipTarget(buf, i)
	switch {
	case i == len(buf):
		return 0, ErrIncomplete
	case buf[i] == '#':
		return 0, errFragment
	case buf[i] != ' ':
		return 0, errTargetByte
	case i == s:
		return 0, errEmptyTarget
	}
	r.Target = buf[s:i]
	minor, i, err := parseVersion(buf, i+1, "\r\n")
	if err != nil {
		return 0, err
	}
	r.Minor = minor
	// The version decides between 505 and 400, so it is checked first.
	return i, r.checkTarget()
}

// parseVersion parses "HTTP/" DIGIT "." DIGIT followed by end (CRLF or
// SP) at buf[i] and returns the minor version and the index after end.
func parseVersion(buf []byte, i int, end string) (int, int, error) {
	const pattern = "HTTP/9.9"
	for k := 0; k < len(pattern)+len(end); k++ {
		if i+k >= len(buf) {
			return 0, 0, ErrIncomplete
		}
		c := buf[i+k]
		switch {
		case k >= len(pattern):
			if c != end[k-len(pattern)] {
				return 0, 0, versionEndError(c, end[k-len(pattern)])
			}
		case pattern[k] == '9':
			if !isDigit(c) {
				return 0, 0, errVersionSyntax
			}
		case c != pattern[k]:
			return 0, 0, errVersionSyntax
		}
	}
	major, minor := buf[i+5], buf[i+7]
	if major != '1' || minor > '1' {
		return 0, 0, ErrVersion
	}
	return int(minor - '0'), i + len(pattern) + len(end), nil
}

// versionEndError says why c is not the expected byte want after a version.
func versionEndError(c, want byte) error {
	switch {
	case want == '\r' && c == '\n':
		return errBareLF
	case want == '\n':
		return errBareCR
	case want == ' ':
		return errStatusLine
	}
	return errVersionSyntax
}

// checkHead applies the rules that need the whole head.
func (r *Request) checkHead() error {
	if r.Host == nil && r.Minor == 1 {
		return errNoHost // RFC 9112 §3.2
	}
	if r.Form == FormAuthority && (r.Flags.Has(FlagTransferEncoding) || r.ContentLength > 0) {
		// RFC 9110 §9.3.6: a CONNECT request has no content; bytes after
		// its head belong to the tunnel.
		return errConnectContent
	}
	if r.Form == FormAbsolute && r.Host != nil && !equalFoldBytes(r.Host, r.authority) {
		// RFC 9112 §3.2.2: a client must send the target's authority as
		// Host. Two different hosts in one request is how routing
		// confusion starts: one hop reads the target, another the field.
		return errHostMismatch
	}
	return nil
}

// Authority returns the authority of an absolute-form or authority-form
// target (for absolute-form, Parse has checked that a Host field, if any,
// matches it), or nil for origin-form and asterisk-form.
func (r *Request) Authority() []byte { return r.authority }

// Framing returns how the request body is delimited: chunked, by length,
// or none (RFC 9112 §6.3: requests are never close-delimited).
func (r *Request) Framing() Framing {
	switch {
	case r.Flags.Has(FlagChunked):
		return FramingChunked
	case r.Flags.Has(FlagContentLength):
		return FramingLength
	}
	return FramingNone
}

// Values appends the value of every field named name (case-insensitive) to
// dst, in order, and returns it. The values alias the parsed buffer. For
// Host on an absolute-form target it is the target's authority, the host
// a server reads whatever the Host field says (RFC 9112 §3.2.2).
func (h *Request) Values(dst [][]byte, name string) [][]byte {
	if h.Form == FormAbsolute && EqualFold([]byte(name), "Host") {
		return append(dst, h.authority)
	}
	for i := range h.Fields {
		if f := &h.Fields[i]; EqualFold(f.Name, name) {
			dst = append(dst, f.Value)
		}
	}
	return dst
}

// PathQuery returns the target's path and query (without '?'), still
// percent-encoded. An absolute-form target's path starts after its
// authority; "*" and authority-form have no path.
func (h *Request) PathQuery() (path, query []byte) {
	t := h.Target
	switch h.Form {
	case FormAbsolute:
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			j := bytes.IndexAny(t, "/?")
			if j < 0 {
				return []byte("/"), nil
			}
			t = t[j:]
		}
	case FormOrigin:
	default:
		return nil, nil
	}
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		return t[:i], t[i+1:]
	}
	return t, nil
}

// Idempotent tells whether a request with this method may be sent again
// after its connection failed before any answer byte (RFC 9110 §9.2.2:
// the idempotent methods, less TRACE, which a proxy never repeats): what
// both front ends ask before a retry on a fresh shard connection.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "PUT", "OPTIONS", "DELETE":
		return true
	}
	return false
}
