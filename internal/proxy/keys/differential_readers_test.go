package keys

// What the shard side reads in the differential tests: Go (the oracle)
// and the other mainstream parsers modeled to tell a justified refusal
// from an over-refusal.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// diffRule is one rule under test with its Go counterpart.
type diffRule struct {
	kind  diffKind
	spec  string // as given to ParseRules
	name  string // header, parameter or cookie name as parsed; path template
	ext   *Extractor
	segs  []string // path: the template's segments as the proxy parsed them
	keyAt int
	mux   *http.ServeMux // path: nil when ServeMux cannot express the template
}

func newDiffRule(kind diffKind, name string) (*diffRule, error) {
	spec := kind.String() + ":" + name
	rules, err := ParseRules(spec)
	if err != nil {
		return nil, err
	}
	if len(rules) != 1 {
		return nil, fmt.Errorf("%q is %d rules", spec, len(rules))
	}
	r := &diffRule{kind: kind, spec: spec, name: rules[0].name, ext: NewExtractor(rules, 0)}
	if kind == diffPath {
		r.segs, r.keyAt = rules[0].segments, rules[0].keyAt
		r.mux = goMux(r.segs, r.keyAt)
	}
	return r, nil
}

// goMux returns a ServeMux that reads the template the way the proxy's
// prefix match does: "/accounts/{key}" is registered as itself and as
// "/accounts/{key}/{rest...}". Literal segments are escaped so that
// ServeMux, which unescapes pattern literals, compares the same text.
func goMux(segs []string, keyAt int) *http.ServeMux {
	var b strings.Builder
	for i, s := range segs {
		b.WriteByte('/')
		switch {
		case i == keyAt:
			b.WriteString("{key}")
		case s == "{}":
			fmt.Fprintf(&b, "{w%d}", i)
		default:
			b.WriteString(url.PathEscape(s))
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Matched", "1")
		io.WriteString(w, r.PathValue("key"))
	})
	mux := http.NewServeMux()
	for _, p := range []string{"GET " + b.String(), "GET " + b.String() + "/{rest...}"} {
		if !tryHandle(mux, p, h) {
			return nil // e.g. "/../{key}": ServeMux never matches an unclean pattern
		}
	}
	return mux
}

func tryHandle(mux *http.ServeMux, pattern string, h http.Handler) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	mux.Handle(pattern, h)
	return true
}

// read returns what a Go shard reads of req for the rule, and what the
// modeled alternatives read. req is the shard's own request: from
// http.ReadRequest, or the one Go's HTTP/2 server built.
func (r *diffRule) read(req *http.Request) readings {
	switch r.kind {
	case diffHeader:
		return r.readHeader(req)
	case diffQuery:
		return r.readQuery(req.URL.RawQuery)
	case diffCookie:
		return r.readCookie(req)
	}
	return r.readPath(req)
}

func (r *diffRule) readHeader(req *http.Request) readings {
	if textproto.CanonicalMIMEHeaderKey(r.name) == "Host" {
		// Go moves Host out of the header map; a Go shard reads r.Host.
		return readings{Go: reading{req.Host, req.Host != ""}}
	}
	vals := req.Header.Values(r.name)
	var rs readings
	if len(vals) > 0 {
		rs.Go = reading{req.Header.Get(r.name), true}
		rs.Alts = append(rs.Alts,
			altReading{"last value", reading{vals[len(vals)-1], true}},
			altReading{"first non-empty", firstNonEmpty(vals)},
			altReading{"values joined", reading{strings.Join(vals, ", "), true}},
			altReading{"first, trimmed", reading{strings.Trim(vals[0], " \t"), true}})
	}
	// CGI-style readers (PHP, Rack, WSGI environ) fold '-' and '_' into
	// one name; the last line wins.
	cgi := reading{}
	for k, vs := range req.Header {
		if cgiName(k) == cgiName(r.name) && len(vs) > 0 {
			cgi = reading{vs[len(vs)-1], true}
		}
	}
	return withAlt(rs, "CGI name folding", cgi)
}

func cgiName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

func firstNonEmpty(vals []string) reading {
	for _, v := range vals {
		if v != "" {
			return reading{v, true}
		}
	}
	if len(vals) > 0 {
		return reading{"", true}
	}
	return reading{}
}

func withAlt(rs readings, name string, r reading) readings {
	rs.Alts = append(rs.Alts, altReading{name, r})
	return rs
}

// queryParse is one way to split and decode a query.
type queryParse struct {
	semicolon int // 0: drop pairs with ';' (Go ≥ 1.17); 1: ';' splits pairs (Python < 3.9.2, old Go); 2: ';' is data (PHP, Node)
	lenient   bool
}

var semicolonModes = [...]string{"';' drops the pair", "';' splits pairs", "';' is data"}

func (p queryParse) values(q, name string) []string {
	if p.semicolon == 1 {
		q = strings.ReplaceAll(q, ";", "&")
	}
	var vals []string
	for _, pair := range strings.Split(q, "&") {
		if pair == "" || p.semicolon == 0 && strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok1 := queryUnescape(k, p.lenient)
		v, ok2 := queryUnescape(v, p.lenient)
		if ok1 && ok2 && k == name {
			vals = append(vals, v)
		}
	}
	return vals
}

// queryUnescape is url.QueryUnescape, or, lenient, a decoder that keeps a
// malformed escape as written (PHP's urldecode, Node's querystring).
func queryUnescape(s string, lenient bool) (string, bool) {
	if !lenient {
		v, err := url.QueryUnescape(s)
		return v, err == nil
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func (r *diffRule) readQuery(q string) readings {
	var rs readings
	// ParseQuery's error names a pair it dropped; Get still reads the rest,
	// as a shard calling r.URL.Query() does.
	if vs, _ := url.ParseQuery(q); len(vs[r.name]) > 0 {
		rs.Go = reading{vs.Get(r.name), true}
	}
	for semi := range 3 {
		for _, lenient := range []bool{false, true} {
			vals := queryParse{semi, lenient}.values(q, r.name)
			mode := semicolonModes[semi]
			if lenient {
				mode += ", lenient escapes"
			}
			rs = withPicks(rs, mode, vals)
		}
	}
	return rs
}

// withPicks adds the first, last and first non-empty of vals, and the
// reading of a parser that keeps them all (qs in Express, Rack's
// "k[]"-less arrays, Python's parse_qs): one value if they are identical,
// several otherwise.
func withPicks(rs readings, mode string, vals []string) readings {
	if len(vals) == 0 {
		return withAlt(rs, mode, reading{})
	}
	rs = withAlt(rs, mode+", first", reading{vals[0], true})
	rs = withAlt(rs, mode+", last", reading{vals[len(vals)-1], true})
	rs = withAlt(rs, mode+", first non-empty", firstNonEmpty(vals))
	all := reading{vals[0], true}
	if slices.ContainsFunc(vals, func(v string) bool { return v != vals[0] }) {
		all.Val = fmt.Sprintf("several: %q", vals)
	}
	return withAlt(rs, mode+", all values", all)
}

// cookieParse is one way to read a Cookie field.
type cookieParse struct {
	exactNames bool // "k =1" names "k " (a strict RFC 6265 reader), not "k" (Go)
	lenient    bool // any value bytes (Node's cookie), not Go's cookie-octets
}

func (p cookieParse) values(lines []string, name string) []string {
	var vals []string
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			part = strings.Trim(part, " \t")
			k, v, _ := strings.Cut(part, "=")
			if !p.exactNames {
				k = strings.Trim(k, " \t")
			}
			if part == "" || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if !p.lenient && strings.IndexFunc(v, func(c rune) bool { return c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' }) >= 0 {
				continue
			}
			vals = append(vals, v)
		}
	}
	return vals
}

func (r *diffRule) readCookie(req *http.Request) readings {
	var rs readings
	if c, err := req.Cookie(r.name); err == nil {
		rs.Go = reading{c.Value, true}
	}
	lines := req.Header.Values("Cookie")
	for _, exact := range []bool{false, true} {
		for _, lenient := range []bool{false, true} {
			mode := map[bool]string{false: "trimmed names", true: "exact names"}[exact] +
				map[bool]string{false: "", true: ", any value bytes"}[lenient]
			rs = withPicks(rs, mode, cookieParse{exact, lenient}.values(lines, r.name))
		}
	}
	return rs
}

func (r *diffRule) readPath(req *http.Request) readings {
	var rs readings
	if r.mux != nil {
		rec := httptest.NewRecorder()
		r.mux.ServeHTTP(rec, req)
		if rec.Header().Get("X-Matched") != "" {
			rs.Go = reading{rec.Body.String(), true}
		}
	}
	raw := rawPathOf(req.RequestURI)
	if raw == "" || raw[0] != '/' {
		return rs
	}
	rs = withAlt(rs, "segments as sent", r.matchSegs(splitDecoded(raw)))
	rs = withAlt(rs, "dot segments removed", r.matchSegs(splitDecoded(removeDots(raw))))
	rs = withAlt(rs, "%2e decoded, dot segments removed", r.matchSegs(splitDecoded(removeDots(decodeDots(raw)))))
	rs = withAlt(rs, "slashes merged, dot segments removed", r.matchSegs(splitDecoded(removeDots(mergeSlashes(raw)))))
	if dec, err := url.PathUnescape(raw); err == nil {
		rs = withAlt(rs, "decoded, then split", r.matchSegs(strings.Split(dec[1:], "/")))
	}
	return rs
}

// rawPathOf returns the path of a request-target as sent.
func rawPathOf(uri string) string {
	if !strings.HasPrefix(uri, "/") {
		i := strings.Index(uri, "://")
		if i < 0 {
			return ""
		}
		uri = uri[i+3:]
		j := strings.IndexAny(uri, "/?")
		if j < 0 {
			return "/"
		}
		uri = uri[j:]
	}
	p, _, _ := strings.Cut(uri, "?")
	return p
}

// splitDecoded splits a raw path into segments, each percent-decoded
// (kept as written when malformed).
func splitDecoded(raw string) []string {
	segs := strings.Split(raw[1:], "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = d
		}
	}
	return segs
}

// removeDots is RFC 3986 §5.2.4 remove_dot_segments on an absolute path.
func removeDots(p string) string {
	segs := strings.Split(p[1:], "/")
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

func decodeDots(p string) string {
	return strings.NewReplacer("%2e", ".", "%2E", ".").Replace(p)
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// matchSegs matches decoded segments against the template the way the
// contract states it: literal segments equal, {name} any non-empty one,
// a prefix match.
func (r *diffRule) matchSegs(segs []string) reading {
	if len(segs) < len(r.segs) {
		return reading{}
	}
	for i, want := range r.segs {
		switch {
		case i == r.keyAt:
		case want == "{}":
			if segs[i] == "" {
				return reading{}
			}
		case segs[i] != want:
			return reading{}
		}
	}
	return reading{segs[r.keyAt], true}
}
