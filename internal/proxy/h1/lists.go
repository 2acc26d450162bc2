package h1

import "iter"

// nextElement returns the list element (RFC 9110 §5.6.1) starting at v[i],
// without surrounding OWS, and the index after its comma. Empty elements
// come back empty; recipients must skip them.
func nextElement(v []byte, i int) (elem []byte, next int) {
	s := i
	for i < len(v) && v[i] != ',' {
		i++
	}
	elem = trimOWS(v[s:i])
	if i < len(v) {
		i++
	}
	return elem, i
}

// connectionFlags classifies the tokens of one Connection field
// (RFC 9112 §9.6, RFC 9110 §7.6.1).
func connectionFlags(v []byte) Flags {
	var f Flags
	for i := 0; i < len(v); {
		var tok []byte
		tok, i = nextElement(v, i)
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			f |= FlagConnClose
		case equalFold(tok, "keep-alive"):
			f |= FlagConnKeepAlive
		default:
			f |= FlagConnOther
		}
	}
	return f
}

// checkTrailerField rejects a Trailer field that announces a framing
// field: RFC 9110 §6.5.1 forbids framing fields in trailers, and Go's
// net/http rejects such a message, so a backend would disagree with us.
func checkTrailerField(v []byte) error {
	for i := 0; i < len(v); {
		var name []byte
		name, i = nextElement(v, i)
		switch lookupField(name) {
		case idContentLength, idTransferEncoding, idTrailer:
			return errTrailerFraming
		}
	}
	return nil
}

// nextCoding parses one transfer-coding of a Transfer-Encoding list at
// v[i] (RFC 9110 §10.1.4, RFC 9112 §7):
//
//	transfer-coding    = token *( OWS ";" OWS transfer-parameter )
//	transfer-parameter = token BWS "=" BWS ( token / quoted-string )
//
// It returns the coding name, whether it had parameters and the index of
// the next coding. Empty list elements are rejected: they are legal, but
// only a confused or hostile sender writes "chunked,,".
func nextCoding(v []byte, i int) (name []byte, params bool, next int, ok bool) {
	s := i
	i = skipToken(v, i)
	if i == s {
		return nil, false, 0, false
	}
	name = v[s:i]
	for {
		i = skipWS(v, i)
		switch {
		case i == len(v):
			return name, params, i, true
		case v[i] == ',':
			i = skipWS(v, i+1)
			return name, params, i, i < len(v)
		case v[i] == ';':
			if i, ok = parameter(v, skipWS(v, i+1)); !ok {
				return nil, false, 0, false
			}
			params = true
		default:
			return nil, false, 0, false
		}
	}
}

// parameter parses token BWS "=" BWS ( token / quoted-string ) at v[i].
func parameter(v []byte, i int) (int, bool) {
	s := i
	if i = skipToken(v, i); i == s {
		return 0, false
	}
	if i = skipWS(v, i); i == len(v) || v[i] != '=' {
		return 0, false
	}
	i = skipWS(v, i+1)
	if i < len(v) && v[i] == '"' {
		return quotedString(v, i)
	}
	s = i
	if i = skipToken(v, i); i == s {
		return 0, false
	}
	return i, true
}

// quotedString parses a quoted-string starting with the DQUOTE at v[i]
// (RFC 9110 §5.6.4) and returns the index after the closing DQUOTE.
func quotedString(v []byte, i int) (int, bool) {
	for i++; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i++; i == len(v) || chars[v[i]]&cValue == 0 {
				return 0, false
			}
		case chars[c]&cQdtext == 0:
			return 0, false
		}
	}
	return 0, false
}

func skipToken(v []byte, i int) int {
	for i < len(v) && isTchar(v[i]) {
		i++
	}
	return i
}

func skipWS(v []byte, i int) int {
	for i < len(v) && isWS(v[i]) {
		i++
	}
	return i
}

// ConnectionTokens yields the non-empty tokens of every Connection field,
// in order, as slices of the parsed buffer. It does not allocate.
func (h *Head) ConnectionTokens() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for k := range h.Fields {
			if h.Fields[k].id != idConnection {
				continue
			}
			v := h.Fields[k].Value
			for i := 0; i < len(v); {
				var tok []byte
				if tok, i = nextElement(v, i); len(tok) > 0 && !yield(tok) {
					return
				}
			}
		}
	}
}

// HopByHop reports whether a field named name must not be forwarded past
// this hop: it is in the static list (Connection, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade, Proxy-Authenticate,
// Proxy-Authorization; RFC 9110 §7.6.1, §11.7) or this message's
// Connection fields list it. Names compare case-insensitively. It does not
// allocate.
func (h *Head) HopByHop(name []byte) bool {
	if lookupField(name).hopByHop() {
		return true
	}
	if !h.Flags.Has(FlagConnOther) {
		return false
	}
	for tok := range h.ConnectionTokens() {
		if equalFoldBytes(tok, name) {
			return true
		}
	}
	return false
}
