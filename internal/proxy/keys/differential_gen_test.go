package keys

// The differential tests' request grammar: few names and values, chosen
// to hit the edges of each rule kind.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
)

// genCase is one generated request, before it is written for a protocol.
type genCase struct {
	kind   diffKind
	name   string      // the rule's argument
	target string      // request-target; origin-form for HTTP/2
	fields [][2]string // name, value as sent (a value may carry the OWS to send)
}

func (c genCase) cookieLines() []string {
	var out []string
	for _, f := range c.fields {
		if strings.EqualFold(f[0], "cookie") {
			out = append(out, f[1])
		}
	}
	return out
}

// gen draws requests from a small grammar aimed at the edges of each rule.
type gen struct {
	*rand.Rand
	h2 bool // HTTP/2: raw bytes an HTTP/1.1 target cannot carry, values with surrounding whitespace
}

func (g gen) pick(xs ...string) string { return xs[g.IntN(len(xs))] }
func (g gen) chance(p float64) bool    { return g.Float64() < p }

// caseOf spells s in a random case.
func (g gen) caseOf(s string) string {
	switch g.IntN(4) {
	case 0:
		return s
	case 1:
		return strings.ToLower(s)
	case 2:
		return strings.ToUpper(s)
	}
	b := []byte(s)
	for i, c := range b {
		if g.IntN(2) == 0 {
			b[i] = swapCase(c)
		}
	}
	return string(b)
}

func swapCase(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z':
		return c - 32
	case c >= 'A' && c <= 'Z':
		return c + 32
	}
	return c
}

// escape percent-encodes every byte of s with probability p (always for
// bytes an HTTP/1.1 target cannot carry), in random hex case.
func (g gen) escape(s string, p float64) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '#' && c != '%' && !g.chance(p) {
			b.WriteByte(c)
			continue
		}
		h := fmt.Sprintf("%%%02X", c)
		if g.IntN(2) == 0 {
			h = strings.ToLower(h)
		}
		b.WriteString(h)
	}
	return b.String()
}

// value returns v, with surrounding whitespace now and then: OWS in
// HTTP/1.1, part of the value in HTTP/2.
func (g gen) value(v string) string {
	if g.chance(0.15) {
		v = g.pick(" ", "\t", "  ") + v
	}
	if g.chance(0.15) {
		v += g.pick(" ", "\t")
	}
	return v
}

var (
	headerNames  = []string{"X-Shard-Key", "x-shard-key", "Tenant", "X_Shard_Key", "k", "Host"}
	headerValues = []string{"42", "42", "42", "7", "", "", "a b", "4,2", "42, 42", `"42"`, "é", "\xff", "%34%32", "+",
		"x\x01y", "a\x7fb", "42;q=1", " "}
	headerNoise = [][2]string{{"X-Shard-Keys", "9"}, {"X-Shard", "8"}, {"Accept", "*/*"}, {"X-Shard-Key2", "3"},
		{"Cookie", "X-Shard-Key=5"}, {"X-Shard_Key", "6"}, {"X-Shard-Key-", "1"}}
	hostValues = []string{"example", "example", "EXAMPLE", "example:80", "", "ex ample", "a.b"}
)

func (g gen) header() genCase {
	c := genCase{kind: diffHeader, name: g.pick(headerNames...), target: "/"}
	isHost := strings.EqualFold(c.name, "host")
	if g.chance(0.1) && !g.h2 {
		c.target = "http://" + g.pick("example", "EXAMPLE", "example:80") + g.pick("/", "/p?x=1")
	}
	if isHost && g.h2 {
		c.name = "x-shard-key" // HTTP/2 carries the host in :authority
		isHost = false
	}
	if !isHost {
		c.fields = append(c.fields, [2]string{"Host", "example"})
	}
	for range g.IntN(4) + g.IntN(2) {
		v := g.pick(headerValues...)
		if isHost {
			v = g.pick(hostValues...)
		}
		c.fields = append(c.fields, [2]string{g.caseOf(c.name), g.value(v)})
	}
	for range g.IntN(3) {
		c.fields = append(c.fields, headerNoise[g.IntN(len(headerNoise))])
	}
	g.Shuffle(len(c.fields), func(i, j int) { c.fields[i], c.fields[j] = c.fields[j], c.fields[i] })
	return c
}

var (
	queryNames  = []string{"k", "k", "acct", "k+", "k%", "é", "a;b", "K"}
	queryValues = []string{"1", "1", "1", "2", "", "", "a+b", "a%20b", "%zz", "%", "%2", "%C3%A9", "%FF", "%00", "%3B",
		"%26", "=", "1=2", "+", "%2B", "a/b", "?", "1%", "%e9", "a%2", "%%31"}
	queryValuesH2 = []string{"a b", "é", "\xff", "a\tb"}
)

// queryName spells the rule's parameter name, or another.
func (g gen) queryName(name string) string {
	if g.chance(0.3) {
		return g.pick("x", "kk", "", "k k", "k%3Dx", "%6B%6B", "acct2")
	}
	switch g.IntN(10) {
	case 0:
		return g.escape(name, 1)
	case 1:
		return g.escape(name, 0.5)
	case 2:
		return g.caseOf(name)
	case 3:
		return g.escape(name, 0) + g.pick("%zz", "%", "%2", "+", "%20", "%00")
	case 4:
		return strings.ReplaceAll(g.escape(name, 0), "%20", "+")
	}
	return g.escape(name, 0)
}

func (g gen) query() genCase {
	c := genCase{kind: diffQuery, name: g.pick(queryNames...)}
	var b strings.Builder
	if g.chance(0.05) {
		b.WriteString(g.pick("&", ";", "&&"))
	}
	for i := range g.IntN(6) + 1 {
		if i > 0 {
			b.WriteString(g.pick("&", "&", "&", "&", "&&", ";"))
		}
		v := g.pick(queryValues...)
		if g.h2 && g.chance(0.2) {
			v = g.pick(queryValuesH2...)
		}
		pair := g.queryName(c.name)
		switch {
		case g.chance(0.1):
		case g.chance(0.05):
			pair += "=" + v + "=" + g.pick(queryValues...)
		default:
			pair += "=" + v
		}
		if g.chance(0.08) { // a ';' inside one '&' pair
			other := g.queryName(c.name) + "=" + g.pick(queryValues...)
			if g.IntN(2) == 0 {
				pair, other = other, pair
			}
			pair += ";" + other
		}
		b.WriteString(pair)
	}
	if g.chance(0.05) {
		b.WriteString(g.pick("&", ";"))
	}
	q := b.String()
	if g.chance(0.002) {
		q += strings.Repeat("&", 10000) // past url.ParseQuery's parameter limit
	}
	c.target = g.pick("/", "/p", "/a/b") + "?" + q
	if g.chance(0.03) {
		c.target = "/p"
	}
	if !g.h2 && g.chance(0.05) {
		c.target = "http://example" + c.target
	}
	c.fields = [][2]string{{"Host", "example"}}
	return c
}

var (
	cookieNames  = []string{"k", "k", "sid", "K", "a.b"}
	cookieValues = []string{"1", "1", "1", "2", "", "", `"1"`, `"1`, `1"`, `""`, `"`, "a b", " 1", "1 ", "1,2", "é", "\xff",
		`1\2`, "a=b", "%31", "\t1", "{}", "1\x01", `"a b"`, `" 1"`, "1\x7f"}
	cookieSeps = []string{"; ", "; ", "; ", ";", " ; ", ";;", "; ;", ", ", "\t;"}
)

func (g gen) cookiePair(name string) string {
	var n string
	if g.chance(0.35) {
		n = g.pick("kk", "x", "", "k k", "$Version", "k2", "kk")
	} else {
		switch g.IntN(10) {
		case 0:
			n = name + g.pick(" ", "\t")
		case 1:
			n = g.pick(" ", "\t") + name
		case 2:
			n = g.caseOf(name)
		case 3:
			n = `"` + name + `"`
		default:
			n = name
		}
	}
	if g.chance(0.08) {
		return n
	}
	return n + "=" + g.pick(cookieValues...)
}

func (g gen) cookie() genCase {
	c := genCase{kind: diffCookie, name: g.pick(cookieNames...), target: "/"}
	c.fields = [][2]string{{"Host", "example"}}
	for range g.IntN(3) + 1 {
		var b strings.Builder
		for i := range g.IntN(5) {
			if i > 0 {
				b.WriteString(g.pick(cookieSeps...))
			}
			b.WriteString(g.cookiePair(c.name))
		}
		line := b.String()
		if g.chance(0.002) {
			line += strings.Repeat(";", 3000) // past Request.Cookie's cookie limit
		}
		c.fields = append(c.fields, [2]string{g.caseOf("Cookie"), g.value(line)})
	}
	if g.chance(0.2) {
		c.fields = append(c.fields, [2]string{"X-Cookie", "k=9"})
	}
	g.Shuffle(len(c.fields), func(i, j int) { c.fields[i], c.fields[j] = c.fields[j], c.fields[i] })
	return c
}

var (
	pathTemplates = []string{"/accounts/{key}", "/accounts/{key}", "/accounts/{key}/", "/{key}", "/{tenant}/a/{key}",
		"/accounts/{key}/orders", "/v1/accounts/{key}", "/a b/{key}", "/café/{key}", "/100%/{key}"}
	pathKeys = []string{"42", "42", "42", "a%2Fb", "a%20b", "%25", "100%25", "%2e%2e", "..", ".", "%2e", "", "%C3%A9",
		"%FF", "%00", "a|b", "a%2Fb|c", "a{b}", "a%2Fb%7C", `a%2F"b`, "a^b", "~u", "a;b", ";x", "a:b", "@", "a%3Fb",
		"a%23b", "a+b", "%2F", "%2f", "a%2fb", "%2F%2E%2E", "a%5C..", `a\b`}
	pathKeysH2  = []string{"a b", "é", "a%2Fb c", "a#b", "%zz", "a%2F\xc3\xa9", "\xff"}
	pathWilds   = []string{"acme", "acme", "acme", "", "x%2Fy", "%2e%2e", "..", ".", "a|b", "%61cme"}
	pathExtras  = []string{"orders", "orders", "", "..", ".", "%2e%2e", "x", "7", "%2E"}
	pathQueries = []string{"?x=1", "?a/../b", "?", "?k=%2F", "?k=a%2Fb|"}
)

// literal spells a template's literal segment.
func (g gen) literal(s string) string {
	switch g.IntN(20) {
	case 0, 1:
		return g.escape(s, 0.3)
	case 2:
		return g.escape(s, 1)
	case 3:
		return g.caseOf(s)
	case 4:
		i := g.IntN(len(s) + 1)
		return g.escape(s[:i], 0) + g.pick("%2F", "%2f", "/") + g.escape(s[i:], 0)
	case 5:
		return g.pick("%2e%2e", "..", ".", "x/..") + "/" + g.escape(s, 0)
	}
	return g.escape(s, 0)
}

func (g gen) path() genCase {
	c := genCase{kind: diffPath, name: g.pick(pathTemplates...)}
	c.fields = [][2]string{{"Host", "example"}}
	rules, err := ParseRules("path:" + c.name)
	if err != nil {
		panic(err)
	}
	var segs []string
	if g.chance(0.05) {
		segs = append(segs, g.pick("..", ".", "%2e%2e", "x"))
	}
	for i, s := range rules[0].segments {
		if g.chance(0.03) {
			continue
		}
		switch {
		case i == rules[0].keyAt:
			k := g.pick(pathKeys...)
			if g.h2 && g.chance(0.2) {
				k = g.pick(pathKeysH2...)
			}
			segs = append(segs, k)
		case s == "{}":
			segs = append(segs, g.pick(pathWilds...))
		default:
			segs = append(segs, g.literal(s))
		}
		if g.chance(0.04) {
			segs = append(segs, g.pick("..", ".", "%2e%2e", "%2E", ""))
		}
	}
	for g.chance(0.3) {
		segs = append(segs, g.pick(pathExtras...))
	}
	p := "/" + strings.Join(segs, "/")
	if g.chance(0.05) {
		p = "/" + p
	}
	if g.chance(0.1) {
		p += "/"
	}
	if g.chance(0.1) {
		p += g.pick(pathQueries...)
	}
	if !g.h2 && g.chance(0.05) {
		p = "http://example" + p
	}
	c.target = p
	return c
}

func (g gen) draw(kind diffKind) genCase {
	switch kind {
	case diffHeader:
		return g.header()
	case diffQuery:
		return g.query()
	case diffCookie:
		return g.cookie()
	}
	return g.path()
}

// rawH1 writes c as an HTTP/1.1 head, with now and then a line shape
// only one side accepts (bare LF, obs-fold, space before the colon).
func (g gen) rawH1(c genCase) []byte {
	var b bytes.Buffer
	b.WriteString("GET " + c.target + " HTTP/1.1\r\n")
	for _, f := range c.fields {
		sep := g.pick(":", ": ", ": ", ": ")
		if g.chance(0.005) {
			sep = " :"
		}
		eol := "\r\n"
		if g.chance(0.005) {
			eol = "\n"
		}
		b.WriteString(f[0] + sep + f[1] + eol)
		if g.chance(0.005) {
			b.WriteString(g.pick(" ", "\t") + "folded\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
