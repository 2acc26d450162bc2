package keys

// Differential tests of the header, query, cookie and path rules against
// Go's net/http, the reference the rules promise to read keys like
// (DESIGN.md §4, "A key is read the way the shard will read it").
//
// The property, for every generated request and every front end:
//
//	if the proxy returns a key K, a shard written in Go reads exactly K.
//
// Anything else is a misroute: the proxy sends the request to K's shard
// while the shard acts on another key (or on none, and falls through to
// its next rule). Refusing (400 ambiguous or invalid key) is always safe;
// so is the proxy rejecting the head, and so is a path the Go shard does
// not route (ServeMux redirects an unclean path or answers 404: the shard
// does not act on a key). Two more things are counted and bounded:
//
//   - a deferral: the proxy finds no key where Go reads one. With several
//     rules the proxy then tries the next one, so this too routes by a key
//     the shard does not read;
//   - an over-refusal: the proxy refuses where Go and every other reader
//     modeled below (last value wins, ';' splits pairs, lenient escapes,
//     untrimmed cookie names, ...) read the same non-empty value.
//
// Go's reading is taken from Go itself: http.ReadRequest for HTTP/1.1 and
// a real Go HTTP/2 server (h2c, prior knowledge) fed by hand-written
// frames for HTTP/2, then Header.Get, url.ParseQuery(RawQuery).Get,
// Request.Cookie and a real ServeMux with PathValue.
//
// The files: this one holds the property, the HTTP/1.1 runs and the fuzz
// target; differential_readers_test.go what Go and the other modeled
// parsers read; differential_gen_test.go the request grammar;
// differential_h2_test.go the HTTP/2 oracle and runs. The misroutes found
// are written down, request bytes and all, in the *KnownMisroutes tests:
// they, and the corpus runs that meet them, FAIL until the proxy is fixed.
//
// Environment: KEYS_DIFF_SEED fixes the corpus seed (logged either way),
// KEYS_DIFF_N the corpus size per kind, and KEYS_DIFF_SKIP_KNOWN=1 makes
// the corpus and the fuzz target skip the misroutes already written down
// in TestDifferentialKnownMisroutes, so that a fuzzing session can look
// past them.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
)

// diffKind is the kind of rule a differential case exercises.
type diffKind uint8

const (
	diffHeader diffKind = iota
	diffQuery
	diffCookie
	diffPath
	numDiffKinds
)

func (k diffKind) String() string { return [...]string{"header", "query", "cookie", "path"}[k] }

// reading is what one parser reads for a rule. Found with an empty Val is
// an empty value, which no shard routes by.
type reading struct {
	Val   string
	Found bool
}

func (r reading) String() string {
	if !r.Found {
		return "none"
	}
	return strconv.Quote(r.Val)
}

// key reports the value a shard would route by, if any.
func (r reading) key() (string, bool) { return r.Val, r.Found && r.Val != "" }

// altReading is the reading of another mainstream parser, named.
type altReading struct {
	Reader string
	R      reading
}

// readings is what the shard side reads of one request: Go's reading, the
// oracle, and the modeled alternatives that justify a refusal.
type readings struct {
	Go   reading
	Alts []altReading
}

// proxyReading is what the proxy makes of a request for one rule.
type proxyReading struct {
	key     string
	refused error // wraps answer.ErrAmbiguousKey or answer.ErrInvalidKey
}

func (p proxyReading) String() string {
	switch {
	case p.refused != nil:
		return "refused (" + p.refused.Error() + ")"
	case p.key == "":
		return "no key"
	}
	return strconv.Quote(p.key)
}

func proxyRead(e *Extractor, req Request) (proxyReading, error) {
	s := AcquireScratch()
	defer ReleaseScratch(s)
	key, _, err := e.Key(req, s)
	switch {
	case err == nil:
		return proxyReading{key: string(key)}, nil
	case errors.Is(err, answer.ErrNoKey):
		return proxyReading{}, nil
	case errors.Is(err, answer.ErrAmbiguousKey), errors.Is(err, answer.ErrInvalidKey):
		if a := answer.For(err, ""); a.Status != http.StatusBadRequest {
			return proxyReading{}, fmt.Errorf("refusal answered %d, want 400", a.Status)
		}
		return proxyReading{refused: err}, nil
	}
	return proxyReading{}, fmt.Errorf("unexpected error %v", err)
}

// class is the verdict on one request at one front end.
type class int

const (
	classGoRejects        class = iota // the shard never acts on it: skipped
	classHeadRejects                   // the proxy rejects the head (400) before reading a key
	classAgree                         // same non-empty key
	classNone                          // neither reads a key
	classGoNoAct                       // path: the proxy routes, ServeMux redirects or 404s
	classRefusedGoNone                 // the proxy refuses, Go reads no key
	classRefusedJustified              // the proxy refuses, Go reads a key some other reader does not
	classOverRefusal                   // the proxy refuses where every reader reads the same key
	classDeferral                      // the proxy finds no key, Go reads one
	classMisroute                      // the proxy routes by a key Go does not read
	numClasses
)

var classNames = [...]string{"go-rejects", "head-rejected", "agree", "none", "go-no-act", "refused/go-none",
	"refused/justified", "OVER-REFUSAL", "DEFERRAL", "MISROUTE"}

func (c class) String() string { return classNames[c] }

// verdict classifies the proxy's reading p against the shard side's rs.
func verdict(kind diffKind, p proxyReading, rs readings) class {
	gk, gok := rs.Go.key()
	switch {
	case p.refused != nil && !gok:
		return classRefusedGoNone
	case p.refused != nil:
		for _, a := range rs.Alts {
			if a.R != rs.Go {
				return classRefusedJustified
			}
		}
		return classOverRefusal
	case p.key == "" && gok:
		return classDeferral
	case p.key == "":
		return classNone
	case gok && gk == p.key:
		return classAgree
	case kind == diffPath && !rs.Go.Found:
		return classGoNoAct
	}
	return classMisroute
}

// disagreeing lists the alternative readers that read another non-empty
// key than the one the proxy routed by.
func disagreeing(p proxyReading, rs readings) []string {
	var out []string
	for _, a := range rs.Alts {
		if k, ok := a.R.key(); ok && p.refused == nil && p.key != "" && k != p.key {
			out = append(out, a.Reader+": "+a.R.String())
		}
	}
	return out
}

// outcome is one front end's verdict on one request.
type outcome struct {
	front string
	class class
	proxy proxyReading
	rs    readings
	notes []string // other readers that read another key than the routed one
}

// diffH1 runs one HTTP/1.1 request through the proxy's HTTP/1.1 engine
// parser (package h1) and its net/http adapter (HTTPRequest), and through
// Go's http.ReadRequest.
func diffH1(rule *diffRule, raw []byte) ([]outcome, error) {
	goReq, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return []outcome{{front: "h1", class: classGoRejects}}, nil
	}
	rs := rule.read(goReq)
	var out []outcome
	in := new(h1Request)
	if _, err := in.head.Parse(raw); err != nil {
		out = append(out, outcome{front: "h1", class: classHeadRejects, rs: rs})
	} else {
		p, err := proxyRead(rule.ext, in)
		if err != nil {
			return nil, err
		}
		out = append(out, outcome{front: "h1", class: verdict(rule.kind, p, rs), proxy: p, rs: rs, notes: disagreeing(p, rs)})
	}
	// The net/http front end (and the demo shards) read Go's own parse.
	again, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, err
	}
	p, err := proxyRead(rule.ext, HTTPRequest{Req: again})
	if err != nil {
		return nil, err
	}
	return append(out, outcome{front: "net/http", class: verdict(rule.kind, p, rs), proxy: p, rs: rs, notes: disagreeing(p, rs)}), nil
}

// knownMisroute tells whether a request belongs to a misroute already
// written down in TestDifferentialKnownMisroutes; only KEYS_DIFF_SKIP_KNOWN
// makes the corpus and the fuzz target skip them.
func knownMisroute(front string, rule *diffRule, target string, cookieLines []string) string {
	if front == "net/http" && rule.kind == diffHeader && textproto.CanonicalMIMEHeaderKey(rule.name) == "Host" {
		return "the net/http adapter does not see Host, which Go moves to r.Host"
	}
	switch rule.kind {
	case diffPath:
		u, err := url.ParseRequestURI(target)
		if err == nil && u.RawPath != "" && u.EscapedPath() != u.RawPath && strings.Contains(strings.ToLower(u.RawPath), "%2f") {
			return "encoded slash in a path Go re-escapes"
		}
	case diffQuery:
		_, q, _ := strings.Cut(target, "?")
		if strings.Count(q, "&") >= 10000 {
			return "more query parameters than url.ParseQuery reads"
		}
	case diffCookie:
		n := 0
		for _, l := range cookieLines {
			n += strings.Count(l, ";") + 1
		}
		if n > 3000 {
			return "more cookies than Request.Cookie reads"
		}
	case diffHeader:
		if textproto.CanonicalMIMEHeaderKey(rule.name) == "Host" && !strings.HasPrefix(target, "/") {
			return "Host read from the field, Go reads the absolute-form authority"
		}
	}
	return ""
}

func skipKnown() bool { return os.Getenv("KEYS_DIFF_SKIP_KNOWN") == "1" }

// diffStats counts verdicts for one kind at one front end.
type diffStats struct {
	n        [numClasses]int
	known    int // misroutes and deferrals of a known kind
	noted    int // routed, and some other reader reads another key
	examples [numClasses][]string
	notes    []string
}

const maxExamples = 4

func (s *diffStats) add(o outcome, rule *diffRule, desc string, known string) {
	s.n[o.class]++
	if known != "" && (o.class == classMisroute || o.class == classDeferral) {
		s.known++
	}
	if len(o.notes) > 0 {
		s.noted++
		if len(s.notes) < maxExamples {
			s.notes = append(s.notes, fmt.Sprintf("%s %s: proxy %v, Go %v; %s", rule.spec, desc, o.proxy, o.rs.Go, strings.Join(o.notes, "; ")))
		}
	}
	if len(s.examples[o.class]) < maxExamples && o.class != classAgree && o.class != classNone {
		ex := fmt.Sprintf("%s %s: proxy %v, Go %v", rule.spec, desc, o.proxy, o.rs.Go)
		if known != "" {
			ex += " [known: " + known + "]"
		}
		if o.class == classOverRefusal || o.class == classRefusedJustified {
			ex += fmt.Sprintf(" (%d other readers)", len(o.rs.Alts))
		}
		s.examples[o.class] = append(s.examples[o.class], ex)
	}
}

// acted is the number of requests both sides parsed.
func (s *diffStats) acted() int { return sumOf(s.n[classAgree:]) }

func sumOf(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// goClean is the number of requests where Go reads a non-empty key.
func (s *diffStats) goClean() int {
	return s.n[classAgree] + s.n[classRefusedJustified] + s.n[classOverRefusal] + s.n[classDeferral]
}

func (s *diffStats) log(t *testing.T, label string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", label)
	for c := range numClasses {
		fmt.Fprintf(&b, " %s=%d", c, s.n[c])
	}
	refused := s.n[classRefusedGoNone] + s.n[classRefusedJustified] + s.n[classOverRefusal]
	fmt.Fprintf(&b, "; refusal rate %.2f%% of parsed requests, %.2f%% of requests Go reads a key from; %d routed where another reader reads another key",
		pct(refused, s.acted()), pct(s.n[classRefusedJustified]+s.n[classOverRefusal], s.goClean()), s.noted)
	t.Log(b.String())
	for _, c := range []class{classRefusedJustified, classOverRefusal, classGoNoAct} {
		for _, ex := range s.examples[c] {
			t.Logf("  %s e.g. %s", c, ex)
		}
	}
	for _, n := range s.notes {
		t.Logf("  routed, other readers differ: %s", n)
	}
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// check fails the test for misroutes and deferrals and bounds
// over-refusal. The bound: a refusal must have a reason some modeled
// reader gives, except for the shapes the contract refuses on sight (a
// ';' pair holding the name, a spaced cookie name, a malformed escape in
// the name) without asking whether every reader would end up with the
// same value. Those are rare in this grammar (0.1-0.5% of the requests Go
// reads a key from), so the bound is 1% of them, plus 5 for the
// small corpora of -short.
func (s *diffStats) check(t *testing.T, label string) {
	t.Helper()
	for _, c := range []class{classMisroute, classDeferral} {
		if s.n[c] > 0 {
			t.Errorf("%s: %d %s (%d of a known kind, see TestDifferentialKnownMisroutes):\n  %s", label, s.n[c], c, s.known,
				strings.Join(s.examples[c], "\n  "))
		}
	}
	if over := s.n[classOverRefusal]; over > s.goClean()/100+5 {
		t.Errorf("%s: %d over-refusals, %.2f%% of %d requests Go reads a key from, want at most 1%%:\n  %s", label, over,
			pct(over, s.goClean()), s.goClean(), strings.Join(s.examples[classOverRefusal], "\n  "))
	}
}

// corpusSeed returns the corpus seed: KEYS_DIFF_SEED, or the clock.
func corpusSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("KEYS_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("KEYS_DIFF_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("corpus seed %d (KEYS_DIFF_SEED=%d reproduces it)", seed, seed)
	return seed
}

func corpusSize(t *testing.T, def int) int {
	if v := os.Getenv("KEYS_DIFF_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("KEYS_DIFF_N=%q: want a positive count", v)
		}
		return n
	}
	if testing.Short() {
		return def / 10
	}
	return def
}

// TestDifferentialCorpus checks the property on a generated corpus per
// rule kind, at the HTTP/1.1 engine and the net/http front end.
func TestDifferentialCorpus(t *testing.T) {
	seed := corpusSeed(t)
	n := corpusSize(t, 20000)
	for kind := range numDiffKinds {
		t.Run(kind.String(), func(t *testing.T) {
			g := gen{Rand: rand.New(rand.NewPCG(seed, uint64(kind)))}
			rules := map[string]*diffRule{}
			stats := map[string]*diffStats{"h1": {}, "net/http": {}}
			skipped := 0
			for range n {
				c := g.draw(kind)
				rule := rules[c.name]
				if rule == nil {
					var err error
					if rule, err = newDiffRule(kind, c.name); err != nil {
						t.Fatal(err)
					}
					rules[c.name] = rule
				}
				raw := g.rawH1(c)
				if knownMisroute("h1", rule, c.target, c.cookieLines()) != "" && skipKnown() {
					skipped++
					continue
				}
				outs, err := diffH1(rule, raw)
				if err != nil {
					t.Fatalf("%s %q: %v", rule.spec, raw, err)
				}
				for _, o := range outs {
					known := knownMisroute(o.front, rule, c.target, c.cookieLines())
					if known != "" && skipKnown() {
						continue
					}
					stats[o.front].add(o, rule, strconv.Quote(abbreviate(string(raw))), known)
				}
			}
			t.Logf("%d requests (%d of a known misroute skipped)", n, skipped)
			for _, front := range []string{"h1", "net/http"} {
				s := stats[front]
				s.log(t, front)
				s.check(t, front)
				// The grammar must keep reaching both sides: a corpus that
				// stops producing agreeing keys or refusals tests nothing.
				if s.n[classAgree] < n/20 {
					t.Errorf("%s: only %d agreeing keys in %d requests: the grammar degenerated", front, s.n[classAgree], n)
				}
			}
		})
	}
}

// TestDifferentialKnownMisroutes holds the misroutes the differential
// tests found, request bytes as sent. Each FAILS until the proxy refuses
// it (or reads what Go reads); the report that came with these tests says
// where to fix each one.
func TestDifferentialKnownMisroutes(t *testing.T) {
	tests := []struct {
		why, rule, raw string
	}{{
		// Go re-escapes a path holding a byte outside its pchar set
		// ('|', '{', '"', '^', ...): url.URL.EscapedPath drops RawPath and
		// escapes the decoded Path, so %2F becomes a real '/'. ServeMux
		// reads key "a"; the proxy, splitting the raw path, reads "a/b|x".
		why:  "MISROUTE: encoded slash in a path Go re-escapes",
		rule: "path:/accounts/{key}",
		raw:  "GET /accounts/a%2Fb|x HTTP/1.1\r\nHost: example\r\n\r\n",
	}, {
		why:  "MISROUTE: encoded slash before the key, in a path Go re-escapes",
		rule: "path:/{tenant}/{key}",
		raw:  "GET /t%2Fu/k{ HTTP/1.1\r\nHost: example\r\n\r\n",
	}, {
		// Found by FuzzKeyDifferential (testdata seed bfd7d31074e8ab62):
		// the proxy's split finds no "accounts" segment and the next rule
		// decides; ServeMux reads "/accounts/%22" and key `"`.
		why:  "DEFERRAL: encoded slash in a literal segment, in a path Go re-escapes",
		rule: "path:/accounts/{key}",
		raw:  "GET /accounts%2F\" HTTP/1.1\r\nHost: example\r\n\r\n",
	}, {
		// url.ParseQuery reads nothing from a query of more than 10000
		// '&'-separated parameters (GODEBUG urlmaxqueryparams, Go 1.24+).
		why:  "MISROUTE: more query parameters than url.ParseQuery reads",
		rule: "query:k",
		raw:  "GET /?k=1" + strings.Repeat("&", 10000) + " HTTP/1.1\r\nHost: example\r\n\r\n",
	}, {
		// Request.Cookie reads nothing from Cookie fields holding more
		// than 3000 cookies, counted as ';' + 1 (GODEBUG httpcookiemaxnum).
		why:  "MISROUTE: more cookies than Request.Cookie reads",
		rule: "cookie:k",
		raw:  "GET / HTTP/1.1\r\nHost: example\r\nCookie: k=1" + strings.Repeat(";", 3000) + "\r\n\r\n",
	}, {
		// package h1 accepts a Host field equal to the absolute-form
		// authority under case folding; a Go shard's r.Host is the
		// authority as written.
		why:  "MISROUTE: Host field and absolute-form authority differ in case",
		rule: "header:Host",
		raw:  "GET http://EXAMPLE/ HTTP/1.1\r\nHost: example\r\n\r\n",
	}, {
		// HTTPRequest.HeaderValues reads Req.Header, from which net/http
		// removed Host (it is r.Host): a header:Host rule finds no key at
		// the net/http front end, and the next rule decides.
		why:  "DEFERRAL: the net/http adapter does not see Host",
		rule: "header:Host",
		raw:  "GET / HTTP/1.1\r\nHost: example\r\n\r\n",
	}}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			kind, name, _ := strings.Cut(tt.rule, ":")
			rule, err := newDiffRule(diffKind(slices.Index([]string{"header", "query", "cookie", "path"}, kind)), name)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := diffH1(rule, []byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				if o.class == classMisroute || o.class == classDeferral {
					t.Errorf("%s (%s front end): %s %q: proxy %v, Go %v", tt.why, o.front, tt.rule, abbreviate(tt.raw), o.proxy, o.rs.Go)
				}
			}
		})
	}
}

// abbreviate shortens long runs of one byte in a request for messages.
func abbreviate(s string) string {
	for _, r := range []string{"&", ";"} {
		if run := strings.Repeat(r, 100); strings.Contains(s, run) {
			n := strings.Count(s, r)
			s = strings.Replace(s, strings.Repeat(r, n), fmt.Sprintf("%s×%d", r, n), 1)
		}
	}
	return s
}

// diffSeeds are the fuzz target's starting shapes: (kind, name, target,
// header lines).
var diffSeeds = []struct {
	kind                  diffKind
	name, target, headers string
}{
	{diffHeader, "X-Shard-Key", "/", "X-Shard-Key: 1\r\nx-shard-key: 2\r\n"},
	{diffHeader, "X-Shard-Key", "/", "X-Shard-Key:\r\nX-Shard-Key: 7\r\n"},
	{diffHeader, "X-Shard-Key", "/", "X-SHARD-KEY:  7 \r\nX-Shard_Key: 8\r\n"},
	{diffHeader, "Tenant", "http://example/", "Tenant: \xc3\xa9\r\n"},
	{diffQuery, "k", "/?k=1;k=3", ""},
	{diffQuery, "k", "/?k=%zz1&k=1", ""},
	{diffQuery, "k", "/?k=a+b&k=a%20b", ""},
	{diffQuery, "k", "/?%6B=3&k=&x=;", ""},
	{diffQuery, "k+", "/?k%2B=1&k+=2", ""},
	{diffCookie, "k", "/", "Cookie: k =1; k=\"1\"\r\n"},
	{diffCookie, "k", "/", "Cookie: k=\"1\r\nCookie: k=1\r\n"},
	{diffCookie, "sid", "/", "Cookie: a=1;;sid=\"x y\", b=2\r\n"},
	{diffPath, "/accounts/{key}", "/accounts/42/orders", ""},
	{diffPath, "/accounts/{key}", "/%61ccounts/%2e%2e/x", ""},
	{diffPath, "/accounts/{key}", "/accounts/1/../2", ""},
	{diffPath, "/{t}/a/{key}", "//a/9?x=1", ""},
	{diffPath, "/accounts/{key}", "/accounts/a%2Fb", ""},
}

// fuzzRequest writes a request with the fuzzer's target and header lines
// after a Host field.
func fuzzRequest(target string, headers []byte) []byte {
	raw := []byte("GET " + target + " HTTP/1.1\r\nHost: example\r\n")
	raw = append(raw, headers...)
	if len(headers) > 0 && !bytes.HasSuffix(headers, []byte("\r\n")) {
		raw = append(raw, "\r\n"...)
	}
	return append(raw, "\r\n"...)
}

// FuzzKeyDifferential checks the property on requests the fuzzer writes:
// kind selects the rule kind, name is its argument (a template for path),
// target the request-target, headers the field lines after Host.
func FuzzKeyDifferential(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add(uint8(s.kind), s.name, s.target, []byte(s.headers))
	}
	f.Fuzz(func(t *testing.T, kind uint8, name, target string, headers []byte) {
		rule, err := newDiffRule(diffKind(kind%uint8(numDiffKinds)), name)
		if err != nil {
			return
		}
		if rule.kind == diffHeader && consumedByGo(rule.name) {
			return
		}
		raw := fuzzRequest(target, headers)
		outs, err := diffH1(rule, raw)
		if err != nil {
			t.Fatalf("%s %q: %v", rule.spec, raw, err)
		}
		for _, o := range outs {
			if o.class != classMisroute && o.class != classDeferral {
				continue
			}
			var lines []string
			if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw))); err == nil {
				lines = req.Header.Values("Cookie")
			}
			if known := knownMisroute(o.front, rule, target, lines); known != "" && skipKnown() {
				continue
			}
			t.Fatalf("%s at the %s front end: %s %q: proxy %v, Go %v", o.class, o.front, rule.spec, raw, o.proxy, o.rs.Go)
		}
	})
}

// consumedByGo tells whether net/http takes a field out of the header map
// (framing and connection fields, Host) or a key rule on it makes no sense
// for any server: the property is about key fields.
func consumedByGo(name string) bool {
	switch textproto.CanonicalMIMEHeaderKey(name) {
	case "Content-Length", "Trailer", "Expect":
		return true
	case "Host":
		return false // read as r.Host
	}
	for _, h := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Transfer-Encoding", "Upgrade"} {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}
