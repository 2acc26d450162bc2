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

// single returns the one value of vals (header lines): identical repeats
// count as one; different values, an empty one among them included, are
// ambiguous. Only empty values: no key. A value with surrounding white
// space is refused: HTTP/1.1 parsers strip it, so it can only come over
// HTTP/2, where it is malformed (RFC 9113 §8.2.1) and some servers keep it.
func (r *Rule) single(vals [][]byte) ([]byte, error) {
	var key []byte
	found := false
	for _, v := range vals {
		if n := len(v); n > 0 && (isSpace(v[0]) || isSpace(v[n-1])) {
			return nil, r.invalid()
		}
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
	count := 0
	for _, line := range s.vals {
		count += bytes.Count(line, []byte(";")) + 1
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
	if len(key) > 0 && count > maxCookies {
		return nil, r.ambiguous() // Go reads no cookie at all past its limit
	}
	return key, nil
}

// Limits of Go's net/http past which it reads nothing: cookies in a
// request (counted as ';'-separated parts of every Cookie line), and
// parameters in a query (url.ParseQuery, GODEBUG urlmaxqueryparams).
const (
	maxCookies     = 3000
	maxQueryParams = 10000
)

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

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
	q0 := q
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
	if bytes.Count(q0, []byte("&"))+1 > maxQueryParams {
		return nil, r.ambiguous() // url.ParseQuery reads no parameter at all past its limit
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
	if pathReadTwoWays(path, len(r.segments), s) {
		return nil, r.ambiguous()
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

// pathReadTwoWays tells whether servers could split path into different
// segments where the template looks (its first n): an encoded slash there
// in a path that Go's url package re-escapes (a byte it would escape makes
// it drop the raw path, and %2F then becomes a real '/'), or a dot segment
// anywhere ("." or "..", encoded or not: ".." after the key removes it),
// which one server redirects, another resolves, and a third takes as it
// is.
func pathReadTwoWays(path []byte, n int, s *Scratch) bool {
	// Without '%' there is no encoded slash or dot, and without '.' no
	// dot segment: the usual path is read one way, found in two scans.
	if bytes.IndexByte(path, '%') < 0 && bytes.IndexByte(path, '.') < 0 {
		return false
	}
	prefix := path
	for i, at := 0, 1; i < n; i++ {
		j := bytes.IndexByte(path[at:], '/')
		if j < 0 {
			prefix = path // the template reaches the end of the path
			break
		}
		at += j + 1
		prefix = path[:at]
	}
	if bytes.Contains(prefix, []byte("%2F")) || bytes.Contains(prefix, []byte("%2f")) {
		for _, c := range path {
			if !isPathByte(c) {
				return true
			}
		}
	}
	if bytes.IndexByte(path, '.') < 0 && !bytes.Contains(path, []byte("%2e")) && !bytes.Contains(path, []byte("%2E")) {
		return false
	}
	for i, rest := 0, path[1:]; ; i++ {
		seg, more, found := bytes.Cut(rest, []byte("/"))
		s.cmp, _ = unescape(s.cmp[:0], seg, false)
		// ".." anywhere can remove the key's segment; "." only shifts
		// the segments the template reads when it comes among them.
		if string(s.cmp) == ".." || string(s.cmp) == "." && i < n {
			return true
		}
		if !found {
			return false
		}
		rest = more
	}
}

// isPathByte tells the bytes Go's url package keeps in an escaped path
// (RFC 3986 pchar, '/' and '%', and '[' ']' as browsers leave them).
func isPathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		bytes.IndexByte([]byte("-._~!$&'()*+,;=:@/%[]"), c) >= 0
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
