package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
)

func TestParseRulesErrors(t *testing.T) {
	for _, spec := range []string{
		"bogus:x", "header", "header:", "query:a b", "path:accounts/{key}", "path:/accounts",
		"path:/{key}/{key}", "path:/a{key}", "path:/a//{key}", "body:", "body:a..b", "body:.a", ",",
		"header:X,", "cookie",
	} {
		t.Run(spec, func(t *testing.T) {
			if _, err := ParseRules(spec); err == nil {
				t.Errorf("ParseRules(%q) accepted it, want an error", spec)
			}
		})
	}
}

func TestParseRulesDefault(t *testing.T) {
	rules, err := ParseRules("  ")
	if err != nil || len(rules) != 1 || rules[0].String() != DefaultRules {
		t.Fatalf("ParseRules(blank) = %v, %v; want [%s]", rules, err, DefaultRules)
	}
}

// requestFor parses a request head the way the HTTP/1.1 engine does and
// attaches body as the buffered body.
func requestFor(method, uri string, headers map[string]string, body string) *h1Request {
	raw := method + " " + uri + " HTTP/1.1\r\nHost: example\r\n"
	for k, v := range headers {
		raw += k + ": " + v + "\r\n"
	}
	raw += "\r\n"
	in := &h1Request{body: []byte(body)}
	if _, err := in.head.Parse([]byte(raw)); err != nil {
		panic(fmt.Sprintf("test request %q: %v", raw, err))
	}
	return in
}

func TestExtract(t *testing.T) {
	tests := []struct {
		rule, uri, body string
		headers         map[string]string
		want            string
		wantErr         error
	}{
		{rule: "header:X-Shard-Key", uri: "/", headers: map[string]string{"x-shard-key": "42"}, want: "42"},
		{rule: "query:acct", uri: "/a?acct=a%20b&x=1", want: "a b"},
		{rule: "query:acct", uri: "/a?acct=", wantErr: answer.ErrNoKey},
		{rule: "cookie:sid", uri: "/", headers: map[string]string{"Cookie": "a=1; sid=xyz; b=2"}, want: "xyz"},
		{rule: "path:/accounts/{key}", uri: "/accounts/42", want: "42"},
		{rule: "path:/accounts/{key}", uri: "/accounts/42/orders/7", want: "42"},
		{rule: "path:/accounts/{key}/", uri: "/accounts/42", want: "42"},
		{rule: "path:/accounts/{key}", uri: "/accounts/a%20b", want: "a b"},
		{rule: "path:/accounts/{key}", uri: "/accounts/", wantErr: answer.ErrNoKey},
		{rule: "path:/accounts/{key}", uri: "/accounts", wantErr: answer.ErrNoKey},
		{rule: "path:/accounts/{key}", uri: "/account/42", wantErr: answer.ErrNoKey},
		{rule: "path:/{tenant}/a/{key}", uri: "/acme/a/9", want: "9"},
		{rule: "path:/{tenant}/a/{key}", uri: "//a/9", wantErr: answer.ErrNoKey},
		{rule: "path:/{key}", uri: "/7?x=1", want: "7"},
		{rule: "path:/accounts/{key}", uri: "/accounts/a%2Fb/orders", want: "a/b"},
		{rule: "path:/accounts/{key}", uri: "/accounts/100%25", want: "100%"},
		{rule: "path:/accounts/{key}", uri: "/x/../accounts/42", wantErr: answer.ErrAmbiguousKey}, // dot segments: resolved by some servers, redirected by others
		{rule: "body:account.id", body: `{"account":{"id":42}}`, want: "42"},
		{rule: "body:account.id", body: `{"account":{"id":"x\"y"}}`, want: `x"y`},
		{rule: "body:account.id", body: `{"account":{"id":"\u00e9t\u00e9"}}`, want: "été"},
		{rule: "body:account.id", body: `{"account":{"id":-1.5e3}}`, wantErr: answer.ErrInvalidKey}, // decoders read a float: send such keys as strings
		{rule: "body:items.0.sku", body: `{"items":[{"sku":"A-1"},{"sku":"B"}]}`, want: "A-1"},
		{rule: "body:items.1", body: `{"items":["a","b"]}`, want: "b"},
		{rule: "body:a*b", body: `{"a*b":"star","ab":"no"}`, want: "star"},
		{rule: "body:@this", body: `{"@this":"lit"}`, want: "lit"},
		{rule: "body:account.id", body: `{"account":{"id":null}}`, wantErr: answer.ErrNoKey},
		{rule: "body:account.id", body: `{"account":{"id":{"x":1}}}`, wantErr: answer.ErrNoKey},
		{rule: "body:account.id", body: `{"account":{"id":true}}`, wantErr: answer.ErrNoKey},
		{rule: "body:account.id", body: ``, wantErr: answer.ErrNoKey},
		{rule: "body:account.id", body: `{"account":{"id":1}`, wantErr: answer.ErrBadBody},
		{rule: "body:account.id", body: `account=1`, wantErr: answer.ErrBadBody},
	}
	for _, tt := range tests {
		t.Run(tt.rule+" "+tt.uri+tt.body, func(t *testing.T) {
			e := NewExtractor(mustRules(t, tt.rule), 0)
			uri := tt.uri
			if uri == "" {
				uri = "/"
			}
			req := requestFor("POST", uri, tt.headers, tt.body)
			s := AcquireScratch()
			defer ReleaseScratch(s)
			key, _, err := e.Key(req, s)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if string(key) != tt.want {
				t.Errorf("key %q, want %q", key, tt.want)
			}
		})
	}
}

func TestHeaderKeyDoesNotAllocate(t *testing.T) {
	for _, rule := range []string{"header:X-Shard-Key", "path:/accounts/{key}", "query:k", "cookie:k", "body:account.id"} {
		e := NewExtractor(mustRules(t, rule), 0)
		req := requestFor("POST", "/accounts/12345?k=12345", map[string]string{"X-Shard-Key": "12345", "Cookie": "k=12345"}, `{"account":{"id":"12345"}}`)
		allocs := testing.AllocsPerRun(200, func() {
			s := AcquireScratch()
			if k, _, err := e.Key(req, s); err != nil || string(k) != "12345" {
				t.Fatalf("%s: key %q, %v", rule, k, err)
			}
			ReleaseScratch(s)
		})
		if rule == "header:X-Shard-Key" && allocs != 0 {
			t.Errorf("%s: %v allocs per extraction, want 0", rule, allocs)
		}
		t.Logf("%s: %v allocs per extraction", rule, allocs)
	}
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{"header:X-Shard-Key", "path:/a/{key}", "body:a.b.0", "query:q,cookie:c", "path:/{x}/{key}/", "body:a\\.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		rules, err := ParseRules(spec)
		if err != nil {
			return
		}
		var texts []string
		for _, r := range rules {
			texts = append(texts, r.String())
		}
		again, err := ParseRules(strings.Join(texts, ","))
		if err != nil || len(again) != len(rules) {
			t.Fatalf("rules %q do not parse again: %v", texts, err)
		}
	})
}

func FuzzPathTemplate(f *testing.F) {
	f.Add("/accounts/{key}", "/accounts/42/orders")
	f.Add("/{t}/x/{key}/", "/acme/x/a%2Fb")
	f.Add("/{key}", "/")
	f.Fuzz(func(t *testing.T, tmpl, path string) {
		r, err := parseRule("path:" + tmpl)
		if err != nil {
			return
		}
		var s Scratch
		key, err := r.matchPath([]byte(path), &s)
		if err != nil || key == nil {
			return
		}
		// The key is one raw segment of the path, percent-decoded.
		for _, seg := range strings.Split(path, "/") {
			if dec, err := url.PathUnescape(seg); (err == nil && dec == string(key)) || seg == string(key) {
				return
			}
		}
		if !strings.Contains(path, "%") {
			t.Fatalf("template %q on %q gave key %q, which is not one segment of the path", tmpl, path, key)
		}
	})
}

func FuzzBodyKey(f *testing.F) {
	f.Add("account.id", `{"account":{"id":42}}`)
	f.Add("items.0.sku", `{"items":[{"sku":"A\u0041"}]}`)
	f.Add("a", `{"a":"x\\y"}`)
	f.Add("a", `[1,2`)
	f.Fuzz(func(t *testing.T, field, body string) {
		r, err := parseRule("body:" + field)
		if err != nil {
			return
		}
		var s Scratch
		key, err := r.bodyKey([]byte(body), DefaultMaxBodyDepth, &s)
		valid := json.Valid([]byte(body))
		refused := errors.Is(err, answer.ErrAmbiguousKey) || errors.Is(err, answer.ErrInvalidKey) || errors.Is(err, answer.ErrBodyTooDeep)
		switch {
		case err != nil && valid && !refused:
			t.Fatalf("valid JSON %q rejected: %v", body, err)
		case err != nil && valid:
			return // read two ways, or not a key as written: refused
		case err == nil && !valid && len(body) > 0:
			t.Fatalf("invalid JSON %q accepted (key %q)", body, key)
		case key == nil:
			return
		}
		// The key must be what a standard decoder finds at the same path.
		var doc any
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return
		}
		for _, seg := range strings.Split(field, ".") {
			switch v := doc.(type) {
			case map[string]any:
				doc = v[seg]
			case []any:
				i, err := strconv.Atoi(seg)
				if err != nil || i < 0 || i >= len(v) {
					t.Fatalf("key %q found at %q in %q, where a decoder finds nothing", key, field, body)
				}
				doc = v[i]
			default:
				t.Fatalf("key %q found at %q in %q, where a decoder finds nothing", key, field, body)
			}
		}
		if want := fmt.Sprint(doc); want != string(key) {
			t.Fatalf("key %q at %q in %q, decoder says %q", key, field, body, want)
		}
	})
}

// TestAmbiguousKey: a rule that finds its name twice with different values
// does not guess, since the shard could read the other value; the request
// gets a 400 naming the rule. Identical repeats are one value.
func TestAmbiguousKey(t *testing.T) {
	tests := []struct {
		rule, head string
		want       string
		wantErr    error
	}{
		{"header:X-Shard-Key", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nx-shard-key: 2\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"header:X-Shard-Key", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nX-SHARD-KEY: 1\r\n\r\n", "1", nil},
		// Go's Header.Get reads the empty first line; a parser that skips
		// empty values reads 7.
		{"header:X-Shard-Key", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key:\r\nX-Shard-Key: 7\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"header:X-Shard-Key", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key:\r\n\r\n", "", answer.ErrNoKey},
		// Go drops a pair with ';'; a parser splitting on ';' reads k=1 or k=3.
		{"query:k", "GET /?k=1;k=3 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"query:k", "GET /?x;k=3 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"query:k", "GET /?k=2&x=a;b HTTP/1.1\r\nHost: h\r\n\r\n", "2", nil},
		{"query:k", "GET /?k=&k=1 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"query:k", "GET /?k=%zz1 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrInvalidKey},
		{"query:k", "GET /?k%zz=1&k=2 HTTP/1.1\r\nHost: h\r\n\r\n", "2", nil},
		{"query:k", "GET /?k+=1 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrNoKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k =1\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=1\xff\r\n\r\n", "", answer.ErrInvalidKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=\"1\r\n\r\n", "", answer.ErrInvalidKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=; k=1\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: kk=1; k=2\r\n\r\n", "2", nil},
		{"path:/accounts/{key}", "GET /%61ccounts/1 HTTP/1.1\r\nHost: h\r\n\r\n", "1", nil},
		{"path:/accounts/{key}", "GET /a%2Fccounts/1 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrNoKey},
		{"path:/accounts/{key}", "GET /accounts/a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", "a/b", nil},
		{"query:k", "GET /?k=1&k=2 HTTP/1.1\r\nHost: h\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"query:k", "GET /?k=1&x=0&k=1 HTTP/1.1\r\nHost: h\r\n\r\n", "1", nil},
		{"query:k", "GET /?k=a+b&k=a%20b HTTP/1.1\r\nHost: h\r\n\r\n", "a b", nil},
		{"query:k", "GET /?%6B=3 HTTP/1.1\r\nHost: h\r\n\r\n", "3", nil},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=1; k=2\r\n\r\n", "", answer.ErrAmbiguousKey},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=1\r\nCookie: a=0; k=\"1\"\r\n\r\n", "1", nil},
		{"query:k,header:X-Shard-Key", "GET /?k=1&k=2 HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 5\r\n\r\n", "", answer.ErrAmbiguousKey},
	}
	for _, tt := range tests {
		t.Run(tt.rule+" "+strings.Fields(tt.head)[1], func(t *testing.T) {
			in := new(h1Request)
			if _, err := in.head.Parse([]byte(tt.head)); err != nil {
				t.Fatal(err)
			}
			s := AcquireScratch()
			defer ReleaseScratch(s)
			key, _, err := NewExtractor(mustRules(t, tt.rule), 0).Key(in, s)
			if !errors.Is(err, tt.wantErr) || string(key) != tt.want {
				t.Fatalf("key %q, err %v; want %q, %v", key, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, answer.ErrNoKey) {
				if a := answer.For(err, ""); a.Status != 400 || a.Body.Rule != strings.Split(tt.rule, ",")[0] {
					t.Errorf("answer %+v, want 400 naming the rule", a)
				}
			}
		})
	}
}

// h1Request is a request as the HTTP/1.1 engine reads it: a head parsed by
// package h1, and a buffered body.
type h1Request struct {
	head h1.Request
	body []byte
}

func (r *h1Request) HeaderValues(dst [][]byte, name string) [][]byte { return r.head.Values(dst, name) }
func (r *h1Request) PathQuery() (path, query []byte)                 { return r.head.PathQuery() }
func (r *h1Request) Body() []byte                                    { return r.body }

func mustRules(t testing.TB, spec string) []Rule {
	t.Helper()
	rules, err := ParseRules(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// rawPath is a request as an HTTP/2 front end holds it: a path and query
// as received, which no HTTP/1.1 parser checked.
type rawPath struct{ path, query string }

func (r rawPath) HeaderValues(dst [][]byte, _ string) [][]byte { return dst }
func (r rawPath) PathQuery() ([]byte, []byte)                  { return []byte(r.path), []byte(r.query) }
func (r rawPath) Body() []byte                                 { return nil }

// TestBadEscapeInKeySegment: a key segment with a malformed escape is
// refused (Go's server answers 400 for it; a lenient one would read it
// as written), while one in a literal segment just does not match.
func TestBadEscapeInKeySegment(t *testing.T) {
	e := NewExtractor(mustRules(t, "path:/accounts/{key}"), 0)
	s := AcquireScratch()
	defer ReleaseScratch(s)
	if _, _, err := e.Key(rawPath{path: "/accounts/%zz"}, s); !errors.Is(err, answer.ErrInvalidKey) {
		t.Errorf("/accounts/%%zz: err %v, want %v", err, answer.ErrInvalidKey)
	}
	if _, _, err := e.Key(rawPath{path: "/acc%zzounts/1"}, s); !errors.Is(err, answer.ErrNoKey) {
		t.Errorf("/acc%%zzounts/1: err %v, want %v", err, answer.ErrNoKey)
	}
}
