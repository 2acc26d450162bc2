package proxy

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	relay "github.com/shard-proxy/shard-proxy/internal/proxy/http2"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// The header policy (package header) is written once and asked by four
// front-end paths, each writing heads in its own representation:
//
//	HTTP/1.1 client -> HTTP/1.1 shard   http1/headwrite.go (bytes)
//	HTTP/1.1 client -> h2c shard        http1/h2cbridge.go (net/http transport)
//	HTTP/2 client   -> h2c shard        http2/head.go (the relay, HPACK fields)
//	HTTP/2 client   -> HTTP/1.1 shard   http2/h1shard.go (the relay, HTTP/1.1 to the shard)
//
// TestHeaderPolicy sends the same cases through all four and checks what
// the shard receives and what the client gets back against one table; then
// that the four agree with each other. Shards are raw servers on sockets
// (bytes for HTTP/1.1, frames for h2c), so that case, duplicate lines and
// every field added or lost are visible; clients write raw bytes or frames
// for the same reason.

// policyPath is one front-end path.
type policyPath struct {
	name     string
	h2Client bool // the client speaks HTTP/2 (h2c, prior knowledge)
	h2Shard  bool // the shard speaks h2c
}

var policyPaths = []policyPath{
	{name: "h1 client to h1 shard (engine)"},
	{name: "h1 client to h2c shard (bridge)", h2Shard: true},
	{name: "h2 client to h2c shard (relay)", h2Client: true, h2Shard: true},
	{name: "h2 client to h1 shard (relay)", h2Client: true},
}

// fieldSet is a set of fields by lower-case name, values in the order
// they arrived (one entry per field line or HPACK field). In a case's
// expectations, a nil value means the field must be absent.
type fieldSet map[string][]string

// with returns base with over applied (nil values delete).
func (base fieldSet) with(overs ...fieldSet) fieldSet {
	out := maps.Clone(base)
	for _, over := range overs {
		for k, v := range over {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
	}
	return out
}

// framing is left out of the comparisons: Content-Length belongs to each
// hop's message framing (Go's transport, for one, sends
// "Content-Length: 0" on a bodiless POST). Transfer-Encoding is compared:
// it may appear only where a case says so.
var framing = []string{"content-length"}

func (s fieldSet) add(name, value string) {
	name = strings.ToLower(name)
	if !slices.Contains(framing, name) {
		s[name] = append(s[name], value)
	}
}

// policyCase is one row of the table. A case applies to HTTP/1.1 clients
// when h1 is set (non-nil) and to HTTP/2 clients when h2 is set.
type policyCase struct {
	name string
	// why is the rule and its reason; each run logs it, so it comes
	// with a failure.
	why string

	// The request: field lines an HTTP/1.1 client adds to its head
	// (spelled as on the wire), and fields an HTTP/2 client adds (HPACK:
	// lower case). The method is GET, POST when post is set or there is a
	// body. An HTTP/1.1 client sends body chunked (its case lists
	// Transfer-Encoding) or, with length, with a Content-Length.
	h1     []string
	h2     []hpack.HeaderField
	post   bool
	body   string
	length bool

	// refusedH1: an HTTP/1.1 client gets 400 "malformed request" and the
	// connection closes, no shard contacted. refusedH2: an HTTP/2 client's
	// stream is refused, no shard contacted (see checkRefusedH2).
	refusedH1, refusedH2 bool

	// What the shard receives: basePolicyRequest with want applied, then
	// wantH2Client for HTTP/2 clients and wantH1Shard for HTTP/1.1 shards.
	want, wantH2Client, wantH1Shard fieldSet
	wantBody                        string

	// The shard's answer: its field lines (HTTP/1.1 shard) or fields (h2c
	// shard), besides Content-Length; nil means "Content-Type:
	// text/plain". interimH1/interimH2 is a 103 the shard sends first.
	// unknownLength answers without a length: chunked from an HTTP/1.1
	// shard, no content-length from an h2c one.
	answerH1               []string
	answerH2               []hpack.HeaderField
	interimH1              []string
	interimH2              []hpack.HeaderField
	unknownLength          bool
	answer, answerH1Client fieldSet // what the client receives: baseAnswer with answer applied, then answerH1Client for HTTP/1.1 clients
	interim                fieldSet // the 103 as the client receives it
}

func (c policyCase) method() string {
	if c.post || c.body != "" {
		return "POST"
	}
	return "GET"
}

const policyShard = "shard-0"

// caseID names one case on one path, in X-Case: the shards record
// requests by it and answer as the case says.
func caseID(path, c int) string { return fmt.Sprintf("%d.%d", path, c) }

// basePolicyRequest is what the shard receives for a request with no
// field of its own: the key and case fields the test sends, the Host (or
// :authority), and the proxy's X-Forwarded-*. Nothing else: no
// User-Agent, Accept-Encoding or anything else a library would add.
func basePolicyRequest(id string) fieldSet {
	return fieldSet{"host": {"shard.test"}, "x-shard-key": {"k"}, "x-case": {id},
		"x-forwarded-for": {"127.0.0.1"}, "x-forwarded-proto": {"http"}, "x-forwarded-host": {"shard.test"}}
}

// baseAnswer is what the client receives for the default answer.
var baseAnswer = fieldSet{"content-type": {"text/plain"}, "x-shard": {policyShard}}

// hf makes HPACK fields of name/value pairs; hf() is an empty, non-nil
// list (a case that applies to HTTP/2 clients with no field of its own).
func hf(pairs ...string) []hpack.HeaderField {
	out := []hpack.HeaderField{}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]})
	}
	return out
}

// policyCases is the table. RFC 9110 §7.6.1 makes Connection, the fields
// it names, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding and Upgrade
// hop-by-hop; Proxy-Authenticate and Proxy-Authorization address the
// proxy (§11.7). An HTTP/1.1 proxy drops them; but RFC 9113 §8.2.2 makes
// an HTTP/2 request that carries a connection-specific field (all of them
// but the proxy credentials, and TE other than "trailers") malformed, and
// §8.1.1 forbids an intermediary to forward it: there the answer is a
// refusal, not a strip.
var policyCases = []policyCase{
	{
		name: "nothing added",
		why:  "the shard gets the client's fields and X-Forwarded-* only: no User-Agent or other field a library adds",
		h1:   []string{}, h2: hf(),
	},
	{
		name: "Connection and the fields it names",
		why:  "RFC 9110 §7.6.1: Connection and every field it lists are this hop's; HTTP/2 has no Connection (RFC 9113 §8.2.2)",
		h1: []string{"Connection: X-Named, keep-alive", "connection: x-OTHER", "X-Named: 1", "X-Other: 2",
			"x-named: 3", "X-Kept: yes"},
		h2:        hf("connection", "x-named", "x-named", "1", "x-kept", "yes"),
		refusedH2: true,
		want:      fieldSet{"x-kept": {"yes"}},
	},
	{
		name: "Connection names X-Forwarded-* and X-Shard-Previous",
		why:  "a field Connection names is dropped whatever it is; the proxy then adds its own X-Forwarded-*",
		h1: []string{"Connection: X-Forwarded-For, x-forwarded-proto", "CONNECTION: X-Forwarded-Host, X-Shard-Previous",
			"X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example", "X-Shard-Previous: evil"},
	},
	{
		name: "Connection names Host and Content-Length",
		why: "Host and the framing address and frame the message: a Connection token never drops them, or the " +
			"body would reach a pooled shard connection unframed (request smuggling)",
		h1:       []string{"Connection: Content-Length, Host"},
		body:     "hello",
		length:   true,
		wantBody: "hello",
	},
	{
		name:        "Connection names Transfer-Encoding",
		why:         "as above: the chunked framing stays with the body it frames",
		h1:          []string{"Connection: Transfer-Encoding", "Transfer-Encoding: chunked"},
		body:        "chunked body",
		wantH1Shard: fieldSet{"transfer-encoding": {"chunked"}},
		wantBody:    "chunked body",
	},
	{
		name:      "Proxy-Connection",
		why:       "hop-by-hop (RFC 9110 §7.6.1); connection-specific in HTTP/2 (RFC 9113 §8.2.2)",
		h1:        []string{"Proxy-Connection: keep-alive"},
		h2:        hf("proxy-connection", "keep-alive"),
		refusedH2: true,
	},
	{
		name:      "Keep-Alive",
		why:       "hop-by-hop (RFC 9110 §7.6.1); connection-specific in HTTP/2 (RFC 9113 §8.2.2)",
		h1:        []string{"KEEP-ALIVE: timeout=5, max=10"},
		h2:        hf("keep-alive", "timeout=5"),
		refusedH2: true,
	},
	{
		name:      "TE other than trailers",
		why:       "TE is hop-by-hop (RFC 9110 §10.1.4); HTTP/2 allows only te: trailers (RFC 9113 §8.2.2)",
		h1:        []string{"TE: gzip;q=0.5, deflate"},
		h2:        hf("te", "gzip"),
		refusedH2: true,
	},
	{
		name: "te: trailers on a gRPC request",
		why: "HTTP/2: te: trailers is the one TE allowed and gRPC needs it end to end (servers use it to detect " +
			"proxies that lose trailers), so the relay forwards it to an h2c shard; HTTP/1.1: TE is a connection option " +
			"(RFC 9110 §10.1.4, with Connection: TE), dropped like any hop-by-hop field, from an HTTP/1.1 client " +
			"and towards an HTTP/1.1 shard",
		h1:           []string{"Content-Type: application/grpc", "TE: trailers"},
		h2:           hf("content-type", "application/grpc", "te", "trailers"),
		post:         true,
		want:         fieldSet{"content-type": {"application/grpc"}},
		wantH2Client: fieldSet{"te": {"trailers"}},
		wantH1Shard:  fieldSet{"te": nil},
	},
	{
		name: "Transfer-Encoding: chunked",
		why: "HTTP/1.1: framing, relayed as it is to an HTTP/1.1 shard (the body is not re-encoded) and turned " +
			"into DATA frames for an h2c one; HTTP/2 has no Transfer-Encoding (RFC 9113 §8.2.2)",
		h1:          []string{"Transfer-Encoding: chunked"},
		body:        "chunked body",
		h2:          hf("transfer-encoding", "chunked"),
		refusedH2:   true,
		wantH1Shard: fieldSet{"transfer-encoding": {"chunked"}},
		wantBody:    "chunked body",
	},
	{
		name:      "Transfer-Encoding other than chunked",
		why:       "RFC 9112 §6.1: a request whose final coding is not chunked has no reliable length: 400, no shard contacted",
		h1:        []string{"Transfer-Encoding: gzip, chunked"},
		body:      "x",
		refusedH1: true,
	},
	{
		name:      "Upgrade",
		why:       "hop-by-hop (RFC 9110 §7.8); without Connection: upgrade no switch is asked; connection-specific in HTTP/2",
		h1:        []string{"Upgrade: foo/1"},
		h2:        hf("upgrade", "foo/1"),
		refusedH2: true,
	},
	{
		name: "Proxy-Authenticate and Proxy-Authorization",
		why:  "credentials for this proxy (RFC 9110 §11.7), never the shard's; not connection-specific, so HTTP/2 strips too",
		h1:   []string{"Proxy-Authorization: Basic Zm9vOmJhcg==", "proxy-authenticate: Basic realm=\"p\""},
		h2:   hf("proxy-authorization", "Basic Zm9vOmJhcg==", "proxy-authenticate", "Basic realm=\"p\""),
	},
	{
		name: "X-Forwarded-For one value",
		why:  "the client's address is appended to what an earlier proxy wrote",
		h1:   []string{"X-Forwarded-For: 203.0.113.1"},
		h2:   hf("x-forwarded-for", "203.0.113.1"),
		want: fieldSet{"x-forwarded-for": {"203.0.113.1, 127.0.0.1"}},
	},
	{
		name: "X-Forwarded-For two lines",
		why:  "every value, in order, is gathered into one field, the client's address last (RFC 9110 §5.3)",
		h1:   []string{"X-Forwarded-For: 203.0.113.1", "x-forwarded-FOR: 198.51.100.2, 192.0.2.3"},
		h2:   hf("x-forwarded-for", "203.0.113.1", "x-forwarded-for", "198.51.100.2, 192.0.2.3"),
		want: fieldSet{"x-forwarded-for": {"203.0.113.1, 198.51.100.2, 192.0.2.3, 127.0.0.1"}},
	},
	{
		name: "X-Forwarded-For empty lines",
		why:  "an empty field line adds no list member (RFC 9110 §5.6.1): no empty element in the joined value",
		h1:   []string{"X-Forwarded-For:", "X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: "},
		h2:   hf("x-forwarded-for", "", "x-forwarded-for", "203.0.113.1", "x-forwarded-for", ""),
		want: fieldSet{"x-forwarded-for": {"203.0.113.1, 127.0.0.1"}},
	},
	{
		name: "X-Forwarded-Proto and -Host present",
		why:  "kept as sent, none added: an edge proxy in front knows the original scheme and host better",
		h1:   []string{"x-FORWARDED-proto: https", "X-Forwarded-HOST: public.example:8443"},
		h2:   hf("x-forwarded-proto", "https", "x-forwarded-host", "public.example:8443"),
		want: fieldSet{"x-forwarded-proto": {"https"}, "x-forwarded-host": {"public.example:8443"}},
	},
	{
		name: "X-Forwarded-Proto and -Host present but empty",
		why:  "a field that is present is kept as sent, even empty: presence, not value, decides (as Classify does, by name)",
		h1:   []string{"X-Forwarded-Proto:", "X-Forwarded-Host: "},
		h2:   hf("x-forwarded-proto", "", "x-forwarded-host", ""),
		want: fieldSet{"x-forwarded-proto": {""}, "x-forwarded-host": {""}},
	},
	{
		name: "X-Forwarded-Proto and -Host absent",
		why:  "added: http (no TLS here) and the request's Host or :authority",
		h1:   []string{}, h2: hf(),
		want: fieldSet{"x-forwarded-proto": {"http"}, "x-forwarded-host": {"shard.test"}},
	},
	{
		name: "client's X-Shard-Previous and -Address",
		why:  "the proxy's to set after a reshard: no client may point a shard at another pod",
		h1:   []string{"x-shard-PREVIOUS: evil", "X-Shard-Previous-Address: 6.6.6.6:1"},
		h2:   hf("x-shard-previous", "evil", "x-shard-previous-address", "6.6.6.6:1"),
	},
	{
		name: "end-to-end fields, odd case, repeated",
		why:  "end-to-end fields pass: names match case-insensitively, values and their order are kept",
		h1: []string{"x-CUSTOM-field: Mixed  Value", "X-Custom-Field: second", "X-SHARD: from-client",
			"User-Agent: policy-test/1", "Accept-Encoding: br"},
		h2: hf("x-custom-field", "Mixed  Value", "x-custom-field", "second", "x-shard", "from-client",
			"user-agent", "policy-test/1", "accept-encoding", "br"),
		want: fieldSet{"x-custom-field": {"Mixed  Value", "second"}, "x-shard": {"from-client"},
			"user-agent": {"policy-test/1"}, "accept-encoding": {"br"}},
	},

	// Answers. An h2c shard cannot send connection-specific fields (RFC
	// 9113 §8.2.2); one that does gets them stripped like an HTTP/1.1 one.
	{
		name: "answer: a shard's own X-Shard",
		why:  "X-Shard is the proxy's: the shard's is replaced, whatever its case",
		h1:   []string{}, h2: hf(),
		answerH1: []string{"Content-Type: text/plain", "x-SHARD: spoofed", "X-Shard: again"},
		answerH2: hf("content-type", "text/plain", "x-shard", "spoofed", "x-shard", "again"),
	},
	{
		name: "answer: hop-by-hop fields",
		why:  "dropped on the way back as on the way in, with the fields Connection names",
		h1:   []string{}, h2: hf(),
		answerH1: []string{"Content-Type: text/plain", "Connection: X-Private, keep-alive", "x-private: secret",
			"KEEP-ALIVE: timeout=5", "Proxy-Authenticate: Basic realm=\"s\"", "Proxy-Connection: keep-alive",
			"Upgrade: foo/1", "TE: trailers", "Proxy-Authorization: x", "X-Kept: yes"},
		answerH2: hf("content-type", "text/plain", "connection", "x-private", "x-private", "secret",
			"keep-alive", "timeout=5", "proxy-authenticate", "Basic realm=\"s\"", "proxy-connection", "keep-alive",
			"upgrade", "foo/1", "proxy-authorization", "x", "x-kept", "yes"),
		answer: fieldSet{"x-kept": {"yes"}},
	},
	{
		name: "answer: end-to-end fields",
		why:  "passed as the shard wrote them; nothing added (no Date, no sniffed Content-Type)",
		h1:   []string{}, h2: hf(),
		answerH1: []string{"X-Odd-CASE: Value", "Set-Cookie: a=1", "set-cookie: b=2", "Cache-Control: no-store",
			"X-Forwarded-For: 1.2.3.4", "X-Shard-Previous: web-9"},
		answerH2: hf("x-odd-case", "Value", "set-cookie", "a=1", "set-cookie", "b=2", "cache-control", "no-store",
			"x-forwarded-for", "1.2.3.4", "x-shard-previous", "web-9"),
		answer: fieldSet{"content-type": nil, "x-odd-case": {"Value"}, "set-cookie": {"a=1", "b=2"},
			"cache-control": {"no-store"}, "x-forwarded-for": {"1.2.3.4"}, "x-shard-previous": {"web-9"}},
	},
	{
		name: "answer: without a length",
		why: "framing is each hop's: chunked to an HTTP/1.1 client, DATA frames to an HTTP/2 one; " +
			"no Transfer-Encoding ever reaches an HTTP/2 client",
		h1: []string{}, h2: hf(),
		unknownLength:  true,
		answerH1Client: fieldSet{"transfer-encoding": {"chunked"}},
	},
	{
		name: "answer: Connection names Content-Length",
		why:  "the answer keeps its framing too: the client would otherwise read the body until the connection closes",
		h1:   []string{}, h2: hf(),
		answerH1: []string{"Content-Type: text/plain", "Connection: Content-Length"},
		answerH2: hf("content-type", "text/plain", "connection", "content-length"),
	},
	{
		name: "answer: 103 Early Hints",
		why: "an interim answer is an answer (RFC 9110 §15.2): the same policy, hop-by-hop fields dropped, " +
			"end-to-end ones kept, the shard's X-Shard replaced by the proxy's",
		h1: []string{}, h2: hf(),
		interimH1: []string{"Link: </a.css>; rel=preload", "Connection: X-Hint", "X-Hint: secret", "Keep-Alive: timeout=5",
			"Proxy-Authenticate: Basic", "X-Shard: spoofed"},
		interimH2: hf("link", "</a.css>; rel=preload", "connection", "x-hint", "x-hint", "secret",
			"keep-alive", "timeout=5", "proxy-authenticate", "Basic", "x-shard", "spoofed"),
		interim: fieldSet{"link": {"</a.css>; rel=preload"}, "x-shard": {policyShard}},
	},
}

// policyRequest is what a shard received.
type policyRequest struct {
	fields fieldSet
	body   string
	raw    string
}

// policyShards records what the shards receive, by X-Case, and answers
// each request as its case says.
type policyShards struct {
	mu  sync.Mutex
	got map[string]policyRequest
}

func (s *policyShards) record(id string, r policyRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[id] = r
}

func (s *policyShards) lookup(id string) (policyRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.got[id]
	return r, ok
}

func caseOf(id string) policyCase {
	_, c, _ := strings.Cut(id, ".")
	i, err := strconv.Atoi(c)
	if err != nil || i < 0 || i >= len(policyCases) {
		return policyCase{}
	}
	return policyCases[i]
}

// startH1 starts the HTTP/1.1 shard, which reads raw bytes and answers
// with the case's field lines.
func (s *policyShards) startH1(t *testing.T) watch.Shard {
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		r := policyRequest{fields: fieldSet{}, body: string(req.Payload), raw: req.Raw()}
		for _, f := range req.Fields {
			r.fields.add(f[0], f[1])
		}
		s.record(req.Get("X-Case"), r)
		c := caseOf(req.Get("X-Case"))
		var b strings.Builder
		if c.interimH1 != nil {
			b.WriteString("HTTP/1.1 103 Early Hints\r\n" + strings.Join(c.interimH1, "\r\n") + "\r\n\r\n")
		}
		b.WriteString("HTTP/1.1 200 OK\r\n")
		lines := c.answerH1
		if lines == nil {
			lines = []string{"Content-Type: text/plain"}
		}
		for _, l := range lines {
			b.WriteString(l + "\r\n")
		}
		if c.unknownLength {
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		} else {
			b.WriteString("Content-Length: 2\r\n\r\nok")
		}
		return b.String(), false
	}))
	return watch.Shard{Ordinal: 0, Name: policyShard, Addr: shard.addr, Ready: true}
}

// startH2 starts the h2c shard, which reads raw frames and answers with
// the case's fields.
func (s *policyShards) startH2(t *testing.T) watch.Shard {
	type stream struct {
		head []hpack.HeaderField
		body []byte
	}
	var mu sync.Mutex
	streams := map[*h2peer]map[uint32]*stream{}
	shard := startH2RawShard(t, policyShard, nil, func(p *h2peer, ev h2ev) {
		if ev.typ != http2.FrameHeaders && ev.typ != http2.FrameData {
			return
		}
		mu.Lock()
		m := streams[p]
		if m == nil {
			m = map[uint32]*stream{}
			streams[p] = m
		}
		st := m[ev.stream]
		switch {
		case st == nil && ev.typ == http2.FrameHeaders:
			st = &stream{head: ev.fields}
			m[ev.stream] = st
		case st != nil && ev.typ == http2.FrameData:
			st.body = append(st.body, ev.data...)
		}
		mu.Unlock()
		if st == nil || !ev.ends() {
			return
		}
		r := policyRequest{fields: fieldSet{}, body: string(st.body), raw: fmt.Sprint(st.head)}
		for _, f := range st.head {
			switch {
			case f.Name == ":authority":
				r.fields.add("host", f.Value)
			case !strings.HasPrefix(f.Name, ":"):
				r.fields.add(f.Name, f.Value)
			}
		}
		id := fieldValue(st.head, "x-case")
		s.record(id, r)
		c := caseOf(id)
		if c.interimH2 != nil {
			_ = p.headers(ev.stream, append(hf(":status", "103"), c.interimH2...), false)
		}
		fields := c.answerH2
		if fields == nil {
			fields = hf("content-type", "text/plain")
		}
		fields = append(hf(":status", "200"), fields...)
		if !c.unknownLength {
			fields = append(fields, hf("content-length", "2")...)
		}
		_ = p.headers(ev.stream, fields, false)
		_ = p.data(ev.stream, []byte("ok"), true)
	})
	return shard.shard(0)
}

// policyAnswer is what a client got back.
type policyAnswer struct {
	status  int
	reset   bool
	code    http2.ErrCode
	closed  bool // HTTP/1.1: the proxy closed the connection after it
	interim []fieldSet
	fields  fieldSet
	body    string
	raw     string
}

// policyH1Request is the HTTP/1.1 request for case id.
func policyH1Request(id string, c policyCase) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s /policy/%s HTTP/1.1\r\nHost: shard.test\r\nX-Shard-Key: k\r\nX-Case: %s\r\n", c.method(), id, id)
	for _, l := range c.h1 {
		b.WriteString(l + "\r\n")
	}
	switch {
	case c.length:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(c.body), c.body)
	case c.body != "":
		fmt.Fprintf(&b, "\r\n%x\r\n%s\r\n0\r\n\r\n", len(c.body), c.body)
	default:
		b.WriteString("\r\n")
	}
	return b.String()
}

func sendH1(t *testing.T, p *running, id string, c policyCase) policyAnswer {
	rc := dialRaw(t, p)
	rc.send(policyH1Request(id, c))
	final, interim := rc.final("GET")
	a := policyAnswer{status: final.Status(), fields: fieldSet{}, body: string(final.Payload), raw: final.Raw()}
	for _, f := range final.Fields {
		a.fields.add(f[0], f[1])
	}
	for _, m := range interim {
		s := fieldSet{}
		for _, f := range m.Fields {
			s.add(f[0], f[1])
		}
		a.interim = append(a.interim, s)
		a.raw = m.Raw() + a.raw
	}
	if final.connTokens("close") {
		rc.closed()
		a.closed = true
	}
	return a
}

// dialH2 opens an HTTP/2 (prior knowledge) connection to the proxy and
// reads the server's SETTINGS, which tell the relay from Go's server.
func dialH2(t *testing.T, url string) (*h2peer, bool) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), relayWait)
	if err != nil {
		t.Fatal(err)
	}
	p := newH2Peer(nc, bufio.NewReader(nc), true)
	t.Cleanup(p.close)
	err = p.write(func(fr *http2.Framer) error {
		if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		return fr.WriteSettings()
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := p.next(t, 0)
	if ev.err != nil || ev.typ != http2.FrameSettings || ev.ack() {
		t.Fatalf("first frame from the proxy: %v, want its SETTINGS", ev)
	}
	got := map[http2.SettingID]uint32{}
	for _, s := range ev.settings {
		got[s.ID] = s.Val
	}
	isRelay := got[http2.SettingMaxConcurrentStreams] == relay.MaxClientStreams && got[http2.SettingMaxHeaderListSize] == relay.MaxHeaderList
	return p, isRelay
}

func sendH2(t *testing.T, p *running, path policyPath, id string, c policyCase) policyAnswer {
	cc, isRelay := dialH2(t, p.url)
	if !isRelay { // without a body rule the relay serves every HTTP/2 client
		t.Fatalf("an HTTP/2 client not served by the relay: the test is not on the path it names")
	}
	head := append(hf(":method", c.method(), ":scheme", "http", ":authority", "shard.test", ":path", "/policy/"+id,
		"x-shard-key", "k", "x-case", id), c.h2...)
	sid := cc.newStream()
	cc.mustHeaders(t, sid, head, true)
	h := cc.answer(t, sid)
	a := policyAnswer{reset: h.reset, code: h.code, fields: fieldSet{}, body: string(h.body), raw: h.String()}
	for i, head := range h.heads {
		s := fieldSet{}
		for _, f := range head {
			if !strings.HasPrefix(f.Name, ":") {
				s.add(f.Name, f.Value)
			}
		}
		if i < len(h.heads)-1 {
			a.interim = append(a.interim, s)
		} else {
			a.fields = s
			a.status, _ = strconv.Atoi(fieldValue(head, ":status"))
		}
	}
	return a
}

// diffFields describes how got differs from want, "" when it does not.
func diffFields(got, want fieldSet) string {
	var out []string
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		g, w := got[k], want[k]
		switch {
		case slices.Equal(g, w):
		case w == nil:
			out = append(out, fmt.Sprintf("%s: got %q, want absent", k, g))
		case g == nil:
			out = append(out, fmt.Sprintf("%s: absent, want %q", k, w))
		default:
			out = append(out, fmt.Sprintf("%s: got %q, want %q", k, g, w))
		}
	}
	return strings.Join(out, "; ")
}

// policyOutcome is one path's result for one case, for the cross-path check.
type policyOutcome struct {
	shard   fieldSet // nil when the shard was not contacted
	answer  fieldSet
	interim []fieldSet
}

// TestHeaderPolicy runs every case of policyCases through the four paths,
// checks each result against the table, then checks that the paths agree
// with each other wherever the table says the protocols do not differ.
func TestHeaderPolicy(t *testing.T) {
	var shards policyShards
	shards.got = map[string]policyRequest{}
	h1Topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{shards.startH1(t)}}
	h2Topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{shards.startH2(t)}}
	h1Proxy := startProxy(t, Config{}, ring.Config{}, &h1Topo)
	h2Proxy := startProxy(t, Config{}, ring.Config{}, &h2Topo)

	outcomes := map[string]map[string]policyOutcome{} // case, path
	var omu sync.Mutex
	for pi, path := range policyPaths {
		p := h1Proxy
		if path.h2Shard {
			p = h2Proxy
		}
		t.Run(path.name, func(t *testing.T) {
			for ci, c := range policyCases {
				if path.h2Client && c.h2 == nil || !path.h2Client && c.h1 == nil {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					o := runPolicyCase(t, p, &shards, path, caseID(pi, ci), c)
					omu.Lock()
					if outcomes[c.name] == nil {
						outcomes[c.name] = map[string]policyOutcome{}
					}
					outcomes[c.name][path.name] = o
					omu.Unlock()
				})
			}
		})
	}

	// The paths agree: for each case, the shard's fields and the client's
	// answer are the same on every path once the differences the table
	// documents (by client or shard protocol) are taken out.
	t.Run("paths agree", func(t *testing.T) {
		for _, c := range policyCases {
			checkAgree(t, c, outcomes[c.name])
		}
	})
}

// checkAgree compares the paths' outcomes for one case with each other:
// whether the shard was contacted (among paths the table expects to
// refuse alike), what it received and what the client got back, once the
// differences the table documents by protocol are taken out.
func checkAgree(t *testing.T, c policyCase, byPath map[string]policyOutcome) {
	t.Helper()
	refused := func(p policyPath) bool { return p.h2Client && c.refusedH2 || !p.h2Client && c.refusedH1 }
	for i, a := range policyPaths {
		oa, ok := byPath[a.name]
		if !ok {
			continue
		}
		oa = neutral(oa, c)
		for _, b := range policyPaths[i+1:] {
			ob, ok := byPath[b.name]
			if !ok {
				continue
			}
			ob = neutral(ob, c)
			if refused(a) == refused(b) && (oa.shard == nil) != (ob.shard == nil) {
				t.Errorf("%s: the shard was contacted on %s: %t, on %s: %t", c.name, a.name, oa.shard != nil, b.name, ob.shard != nil)
			}
			if oa.shard == nil || ob.shard == nil {
				continue
			}
			if d := diffFields(ob.shard, oa.shard); d != "" {
				t.Errorf("%s: the shard got different fields on %s than on %s: %s", c.name, b.name, a.name, d)
			}
			if d := diffFields(ob.answer, oa.answer); d != "" {
				t.Errorf("%s: the client got different fields on %s than on %s: %s", c.name, b.name, a.name, d)
			}
			if len(oa.interim) != len(ob.interim) {
				t.Errorf("%s: %d interim answers on %s, %d on %s", c.name, len(ob.interim), b.name, len(oa.interim), a.name)
				continue
			}
			for k := range oa.interim {
				if d := diffFields(ob.interim[k], oa.interim[k]); d != "" {
					t.Errorf("%s: interim answer %d differs on %s from %s: %s", c.name, k, b.name, a.name, d)
				}
			}
		}
	}
}

// neutral takes out of o what the table says depends on the protocols.
func neutral(o policyOutcome, c policyCase) policyOutcome {
	strip := func(s fieldSet, sets ...fieldSet) fieldSet {
		if s == nil {
			return nil
		}
		s = maps.Clone(s)
		for _, set := range sets {
			for k := range set {
				delete(s, k)
			}
		}
		return s
	}
	o.shard = strip(o.shard, c.wantH2Client, c.wantH1Shard, fieldSet{"x-case": nil}) // x-case names the path
	o.answer = strip(o.answer, c.answerH1Client)
	interim := make([]fieldSet, len(o.interim))
	for i, s := range o.interim {
		interim[i] = strip(s, fieldSet{"x-shard": nil}) // checked per path, with interimShardGap
	}
	o.interim = interim
	return o
}

func runPolicyCase(t *testing.T, p *running, shards *policyShards, path policyPath, id string, c policyCase) policyOutcome {
	t.Helper()
	var a policyAnswer
	if path.h2Client {
		a = sendH2(t, p, path, id, c)
	} else {
		a = sendH1(t, p, id, c)
	}
	got, contacted := shards.lookup(id)
	t.Logf("rule: %s", c.why)
	refused := path.h2Client && c.refusedH2 || !path.h2Client && c.refusedH1
	if refused {
		if contacted {
			t.Errorf("the shard was contacted, want a refusal; it got %s", got.raw)
		}
		switch {
		case !path.h2Client:
			checkRefusedH1(t, a)
		default:
			checkRefusedH2(t, path, a)
		}
		return policyOutcome{answer: a.fields}
	}
	if !contacted {
		t.Fatalf("the shard got nothing; the client got %s", a.raw)
	}

	want := basePolicyRequest(id).with(c.want)
	if path.h2Client {
		want = want.with(c.wantH2Client)
	}
	if !path.h2Shard {
		want = want.with(c.wantH1Shard)
	}
	if d := diffFields(got.fields, want); d != "" {
		t.Errorf("the shard received: %s\n(request as received: %s)", d, got.raw)
	}
	if got.body != c.wantBody {
		t.Errorf("the shard received body %q, want %q", got.body, c.wantBody)
	}

	if a.status != 200 || a.body != "ok" || a.reset || a.closed {
		t.Fatalf("the client got status %d, body %q, reset %t, closed %t; want 200 \"ok\" on a live connection: %s",
			a.status, a.body, a.reset, a.closed, a.raw)
	}
	wantAnswer := baseAnswer.with(c.answer)
	if !path.h2Client {
		wantAnswer = wantAnswer.with(c.answerH1Client)
	}
	if d := diffFields(a.fields, wantAnswer); d != "" {
		t.Errorf("the client received: %s\n(answer as received: %s)", d, a.raw)
	}
	wantInterim := 0
	if c.interim != nil {
		wantInterim = 1
	}
	if len(a.interim) != wantInterim {
		t.Errorf("the client got %d interim answers, want %d: %s", len(a.interim), wantInterim, a.raw)
	} else if wantInterim == 1 {
		if d := diffFields(a.interim[0], c.interim); d != "" {
			t.Errorf("the client's 103: %s\n(answer as received: %s)", d, a.raw)
		}
	}
	return policyOutcome{shard: got.fields, answer: a.fields, interim: a.interim}
}

// checkRefusedH1: 400 "malformed request", the connection closed.
func checkRefusedH1(t *testing.T, a policyAnswer) {
	t.Helper()
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, `"error":"malformed request"`) || !a.closed {
		t.Errorf("the client got %d %q (closed %t), want 400 malformed request and the connection closed: %s",
			a.status, a.body, a.closed, a.raw)
	}
}

// checkRefusedH2: RFC 9113 §8.1.1 makes the stream a stream error
// PROTOCOL_ERROR: the relay, which serves every HTTP/2 client here,
// resets it, forwards nothing and names no shard.
func checkRefusedH2(t *testing.T, path policyPath, a policyAnswer) {
	t.Helper()
	if !a.reset || a.code != http2.ErrCodeProtocol || a.status != 0 {
		t.Errorf("the client got %s, want RST_STREAM PROTOCOL_ERROR and no answer", a.raw)
	}
}
