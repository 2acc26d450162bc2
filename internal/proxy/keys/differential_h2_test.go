package keys

// The differential tests at the HTTP/2 front end, against a real Go
// HTTP/2 server.

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Request is a request as the proxy's HTTP/2 front end holds it (see
// package http2's keyRequest): fields as decoded, the :path split at '?'.
type h2Request struct {
	fields      []hpack.HeaderField
	path, query []byte
}

func (r h2Request) HeaderValues(dst [][]byte, name string) [][]byte {
	for _, f := range r.fields {
		if strings.EqualFold(f.Name, name) {
			dst = append(dst, []byte(f.Value))
		}
	}
	return dst
}
func (r h2Request) PathQuery() ([]byte, []byte) { return r.path, r.query }
func (r h2Request) Body() []byte                { return nil }

// h2Oracle is a real Go HTTP/2 server (h2c with prior knowledge) and one
// client connection to it, written frame by frame so that any byte the
// HTTP/2 framing allows reaches the server. Its handler reports what Go
// read for the rule under test. Not safe for concurrent use.
type h2Oracle struct {
	srv  *http.Server
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	buf  bytes.Buffer
	next uint32 // next stream id
	rule atomic.Pointer[diffRule]
}

func startH2Oracle(t *testing.T) *h2Oracle {
	t.Helper()
	o := &h2Oracle{next: 1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	o.srv = &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// gob, not JSON: JSON would replace invalid UTF-8 in a reading.
		var b bytes.Buffer
		if err := gob.NewEncoder(&b).Encode(o.rule.Load().read(r)); err != nil {
			panic(err)
		}
		w.Header().Set("X-Go", hex.EncodeToString(b.Bytes()))
		w.WriteHeader(http.StatusOK)
	})}
	done := make(chan struct{})
	go func() { defer close(done); o.srv.Serve(ln) }()
	if o.conn, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.conn.Close(); o.srv.Close(); <-done })
	if _, err := io.WriteString(o.conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	o.fr = http2.NewFramer(o.conn, o.conn)
	o.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	o.enc = hpack.NewEncoder(&o.buf)
	if err := o.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return o
}

// do sends one GET with the given :path and fields and returns what Go's
// server read, or rejected when it reset the stream (a malformed request
// no Go shard acts on).
func (o *h2Oracle) do(rule *diffRule, path string, fields []hpack.HeaderField) (rs readings, rejected bool, err error) {
	o.rule.Store(rule)
	id := o.next
	o.next += 2
	o.buf.Reset()
	for _, f := range append([]hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "example"}, {Name: ":path", Value: path}}, fields...) {
		if err := o.enc.WriteField(f); err != nil {
			return rs, false, err
		}
	}
	if err := o.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: o.buf.Bytes(),
		EndStream: true, EndHeaders: true}); err != nil {
		return rs, false, err
	}
	o.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		fr, err := o.fr.ReadFrame()
		if err != nil {
			return rs, false, err
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				if err := o.fr.WriteSettingsAck(); err != nil {
					return rs, false, err
				}
			}
		case *http2.GoAwayFrame:
			return rs, false, fmt.Errorf("server sent GOAWAY %v", fr.ErrCode)
		case *http2.RSTStreamFrame:
			if fr.StreamID == id {
				return rs, true, nil
			}
		case *http2.MetaHeadersFrame:
			if fr.StreamID != id {
				continue
			}
			if s := fr.PseudoValue("status"); s != "200" {
				return rs, false, fmt.Errorf("status %s", s)
			}
			for _, f := range fr.RegularFields() {
				if f.Name == "x-go" {
					b, err := hex.DecodeString(f.Value)
					if err != nil {
						return rs, false, err
					}
					return rs, false, gob.NewDecoder(bytes.NewReader(b)).Decode(&rs)
				}
			}
			return rs, false, errors.New("no x-go field in the response")
		}
	}
}

// h2Fields turns a generated case into HTTP/2 fields: lower-case names,
// values as generated (surrounding whitespace included), no Host field.
func h2Fields(c genCase) []hpack.HeaderField {
	var out []hpack.HeaderField
	for _, f := range c.fields {
		if strings.EqualFold(f[0], "host") {
			continue
		}
		out = append(out, hpack.HeaderField{Name: strings.ToLower(f[0]), Value: f[1]})
	}
	return out
}

// TestDifferentialHTTP2 checks the property at the HTTP/2 front end
// against a real Go HTTP/2 server: :path bytes an HTTP/1.1 target cannot
// carry, and field values with surrounding whitespace, which HTTP/2 does
// not strip.
func TestDifferentialHTTP2(t *testing.T) {
	seed := corpusSeed(t)
	n := corpusSize(t, 5000)
	o := startH2Oracle(t)
	for kind := range numDiffKinds {
		t.Run(kind.String(), func(t *testing.T) {
			g := gen{Rand: rand.New(rand.NewPCG(seed, 100+uint64(kind))), h2: true}
			rules := map[string]*diffRule{}
			var s diffStats
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
				fields := h2Fields(c)
				if known := knownMisroute("h2", rule, c.target, c.cookieLines()); known != "" && skipKnown() {
					skipped++
					continue
				}
				rs, rejected, err := o.do(rule, c.target, fields)
				if err != nil {
					t.Fatalf("%s :path %q %q: %v", rule.spec, c.target, fields, err)
				}
				desc := fmt.Sprintf(":path %q fields %q", c.target, fields)
				if rejected {
					s.add(outcome{front: "h2", class: classGoRejects}, rule, desc, "")
					continue
				}
				path, query, _ := strings.Cut(c.target, "?")
				p, err := proxyRead(rule.ext, h2Request{fields: fields, path: []byte(path), query: []byte(query)})
				if err != nil {
					t.Fatalf("%s %s: %v", rule.spec, desc, err)
				}
				out := outcome{front: "h2", class: verdict(kind, p, rs), proxy: p, rs: rs, notes: disagreeing(p, rs)}
				known := knownMisroute("h2", rule, c.target, c.cookieLines())
				if known == "" && kind == diffHeader && (out.class == classMisroute || out.class == classDeferral) {
					known = h2WhitespaceMisroute(rs.Go, fields)
				}
				if known != "" && skipKnown() {
					skipped++
					continue
				}
				s.add(out, rule, desc, known)
			}
			t.Logf("%d requests (%d of a known misroute skipped)", n, skipped)
			s.log(t, "h2")
			s.check(t, "h2")
		})
	}
}

// h2WhitespaceMisroute names the known misroute of a header value with
// surrounding whitespace, which HTTP/2 keeps and the proxy trims.
func h2WhitespaceMisroute(goRead reading, fields []hpack.HeaderField) string {
	if strings.Trim(goRead.Val, " \t") != goRead.Val {
		return "HTTP/2 field value with surrounding whitespace"
	}
	return ""
}

// TestDifferentialHTTP2KnownMisroutes holds the misroutes found at the
// HTTP/2 front end. Each FAILS until fixed.
func TestDifferentialHTTP2KnownMisroutes(t *testing.T) {
	o := startH2Oracle(t)
	tests := []struct {
		why, rule, path string
		fields          []hpack.HeaderField
	}{{
		// RFC 9113 §8.2.1 forbids it, but Go's HTTP/2 server (and the
		// framer the proxy uses) accept "1 ", and net/http hands it to the
		// handler as is; the proxy trims it and routes by "1".
		why:    "MISROUTE: HTTP/2 field value with trailing whitespace",
		rule:   "header:X-Shard-Key",
		path:   "/",
		fields: []hpack.HeaderField{{Name: "x-shard-key", Value: "1 "}},
	}, {
		why:    "MISROUTE: HTTP/2 field value with leading whitespace, equal to a second one once trimmed",
		rule:   "header:X-Shard-Key",
		path:   "/",
		fields: []hpack.HeaderField{{Name: "x-shard-key", Value: "\t1"}, {Name: "x-shard-key", Value: "1"}},
	}, {
		// A space in :path (no HTTP/1.1 target carries one) makes Go
		// re-escape the path, and %2F splits the key.
		why:  "MISROUTE: encoded slash in an HTTP/2 :path Go re-escapes",
		rule: "path:/accounts/{key}",
		path: "/accounts/a%2Fb c",
	}}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			kind, name, _ := strings.Cut(tt.rule, ":")
			rule, err := newDiffRule(diffKind(slices.Index([]string{"header", "query", "cookie", "path"}, kind)), name)
			if err != nil {
				t.Fatal(err)
			}
			rs, rejected, err := o.do(rule, tt.path, tt.fields)
			if err != nil || rejected {
				t.Fatalf("Go's server: rejected %v, %v", rejected, err)
			}
			path, query, _ := strings.Cut(tt.path, "?")
			p, err := proxyRead(rule.ext, h2Request{fields: tt.fields, path: []byte(path), query: []byte(query)})
			if err != nil {
				t.Fatal(err)
			}
			if c := verdict(rule.kind, p, rs); c == classMisroute || c == classDeferral {
				t.Errorf("%s: %s :path %q fields %q: proxy %v, Go %v", tt.why, tt.rule, tt.path, tt.fields, p, rs.Go)
			}
		})
	}
}
