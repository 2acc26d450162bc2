package keys

import (
	"bytes"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
)

// The header, cookie, query and path rules read a key the way the shard's
// parser will (Go's net/http is the reference: Header.Get, Request.Cookie,
// url.ParseQuery, ServeMux's PathValue), and where parsers could read it
// two ways they refuse rather than guess: two different values, an empty
// value beside a non-empty one (Go's Get returns the first, a parser that
// skips empties the other), a pair another parser splits differently, a
// value some parser drops as malformed.

// ambiguous and invalid are the rule's refusals.
func (r *Rule) ambiguous() error { return answer.KeyError(answer.ErrAmbiguousKey, r.text, nil) }
func (r *Rule) invalid() error   { return answer.KeyError(answer.ErrInvalidKey, r.text, nil) }

// single returns the one value of vals (header lines, trimmed): identical
// repeats count as one; different values, an empty one among them
// included, are ambiguous. Only empty values: no key.
func (r *Rule) single(vals [][]byte) ([]byte, error) {
	var key []byte
	found := false
	for _, v := range vals {
		v = bytes.Trim(v, " \t")
		switch {
		case !found:
			key, found = v, true
		case !bytes.Equal(key, v):
			return nil, r.ambiguous()
		}
	}
	return key, nil
}

// cookie finds the rule's cookie in the Cookie fields held in s.vals, as
// Request.Cookie does: pairs split on ';' and trimmed, the value unquoted.
// A name that matches only once trimmed (Go trims, others do not), a value
// Go drops (bytes outside its cookie-octet set, an unbalanced quote), and
// two different values (an empty one included: Go returns the first) are
// refused.
func (r *Rule) cookie(s *Scratch) ([]byte, error) {
	var key []byte
	found := false
	for _, line := range s.vals {
		for len(line) > 0 {
			var pair []byte
			pair, line, _ = bytes.Cut(line, []byte(";"))
			name, value, _ := bytes.Cut(bytes.Trim(pair, " \t"), []byte("="))
			trimmed := bytes.Trim(name, " \t")
			if string(trimmed) != r.name {
				continue
			}
			if len(trimmed) != len(name) {
				return nil, r.ambiguous() // "k =1": Go reads k, a strict parser "k "
			}
			v, ok := cookieValue(value)
			if !ok {
				return nil, r.invalid()
			}
			switch {
			case !found:
				key, found = v, true
			case !bytes.Equal(key, v):
				return nil, r.ambiguous()
			}
		}
	}
	return key, nil
}

// cookieValue is net/http's parseCookieValue: one pair of surrounding
// quotes stripped, then only cookie-octets (RFC 6265 §4.1.1, plus space
// and comma as Go allows); false for anything else.
func cookieValue(v []byte) ([]byte, bool) {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for _, b := range v {
		if b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return nil, false
		}
	}
	return v, true
}

// query finds the rule's parameter in a raw query as url.ParseQuery reads
// it: pairs split on '&', names and values form-decoded ('+' is a space);
// the query itself is forwarded untouched. Refused: a pair with ';' that
// holds the name (Go drops such a pair, other parsers split it), a bad
// escape in the name or value (Go drops the pair, lenient parsers keep
// it), two different values (an empty one included).
func (r *Rule) query(q []byte, s *Scratch) ([]byte, error) {
	found := false
	s.buf = s.buf[:0]
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte("&"))
		if bytes.IndexByte(pair, ';') >= 0 {
			if r.semicolonHoldsName(pair, s) {
				return nil, r.ambiguous()
			}
			continue // Go drops it; no reading finds the name in it
		}
		name, value, _ := bytes.Cut(pair, []byte("="))
		var ok bool
		if s.cmp, ok = unescape(s.cmp[:0], name, true); string(s.cmp) != r.name {
			continue
		} else if !ok {
			return nil, r.invalid()
		}
		if s.cmp, ok = unescape(s.cmp[:0], value, true); !ok {
			return nil, r.invalid()
		}
		switch {
		case !found:
			s.buf, found = append(s.buf[:0], s.cmp...), true
		case !bytes.Equal(s.buf, s.cmp):
			return nil, r.ambiguous()
		}
	}
	if len(s.buf) == 0 {
		return nil, nil
	}
	return s.buf, nil
}

// semicolonHoldsName tells whether a parser that splits pairs on ';' too
// would find the rule's name in pair.
func (r *Rule) semicolonHoldsName(pair []byte, s *Scratch) bool {
	for len(pair) > 0 {
		var part []byte
		part, pair, _ = bytes.Cut(pair, []byte(";"))
		name, _, _ := bytes.Cut(part, []byte("="))
		if s.cmp, _ = unescape(s.cmp[:0], name, true); string(s.cmp) == r.name {
			return true
		}
	}
	return false
}

// matchPath returns the percent-decoded {key} segment of the raw path when
// the path starts with the template's segments, or nil. Literal segments
// match after percent-decoding, as ServeMux matches them (/%61ccounts is
// /accounts); an encoded slash never splits a segment. A key segment with
// a bad escape is refused (Go's server answers 400 for it, a lenient one
// would read it as written). A decoded key is written to s.buf.
func (r *Rule) matchPath(path []byte, s *Scratch) ([]byte, error) {
	if len(path) == 0 || path[0] != '/' {
		return nil, nil
	}
	rest := path[1:]
	var key []byte
	for i, want := range r.segments {
		if rest == nil {
			return nil, nil
		}
		seg := rest
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		switch {
		case i == r.keyAt:
			key = seg
		case want == "{}":
			if len(seg) == 0 {
				return nil, nil
			}
		case !segmentIs(seg, want, s):
			return nil, nil
		}
	}
	if bytes.IndexByte(key, '%') < 0 {
		return key, nil
	}
	var ok bool
	if s.buf, ok = unescape(s.buf[:0], key, false); !ok {
		return nil, r.invalid()
	}
	return s.buf, nil
}

// segmentIs tells whether a raw path segment is the literal want once
// percent-decoded.
func segmentIs(seg []byte, want string, s *Scratch) bool {
	if bytes.IndexByte(seg, '%') < 0 {
		return string(seg) == want
	}
	var ok bool
	s.cmp, ok = unescape(s.cmp[:0], seg, false)
	return ok && string(s.cmp) == want
}

// unescape appends v with %XX escapes decoded (and, in a query, '+' as a
// space), as url.QueryUnescape and url.PathUnescape do; ok is false when v
// holds a malformed escape, which is then kept as it is.
func unescape(dst, v []byte, query bool) ([]byte, bool) {
	ok := true
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '+' && query:
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			dst = append(dst, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
		case c == '%':
			ok = false
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst, ok
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
