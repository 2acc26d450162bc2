package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// wantJSON checks that m is the proxy's own answer: status, JSON type and
// exactly the body fields in want.
func wantJSON(t *testing.T, m rawMsg, status int, want string) {
	t.Helper()
	if m.Status() != status {
		t.Errorf("status line %q, want %d (answer %q)", m.Start, status, m.Raw())
	}
	if ct := m.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var got, exp any
	if err := json.Unmarshal(m.Payload, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", m.Payload, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	if g, w := fmt.Sprint(got), fmt.Sprint(exp); g != w {
		t.Errorf("body %s, want %s", m.Payload, want)
	}
}

// withoutFields drops the field lines of head whose names are listed.
func withoutFields(head string, names ...string) string {
	lines := strings.SplitAfter(head, "\r\n")
	var b strings.Builder
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		drop := false
		for _, n := range names {
			drop = drop || strings.EqualFold(name, n)
		}
		if !drop {
			b.WriteString(l)
		}
	}
	return b.String()
}

// A 103 or an unasked 100 from a shard reaches the client before the final
// answer, and the pooled shard connection stays in step: every later client
// gets its own answer, on the same shard connection.
func TestInformationalAnswersRelayed(t *testing.T) {
	hintSeen := newGate()
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			final := okResponse("answer for " + req.Target())
			switch {
			case strings.HasPrefix(req.Target(), "/first"):
				// The final answer is written only once the client has the
				// 103: it cannot have been held back until the end.
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n")
				<-hintSeen.wait()
			case strings.HasPrefix(req.Target(), "/hints"):
				final = "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n" +
					"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n" + final
			case strings.HasPrefix(req.Target(), "/continue"):
				final = "HTTP/1.1 100 Continue\r\n\r\n" + final
			}
			if _, err := io.WriteString(c, final); err != nil {
				return
			}
		}
	})
	hintSeen.openAtEnd(t)
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))

	rc := dialRaw(t, p)
	rc.send("GET /first HTTP/1.1\r\nHost: h\r\nX-Shard-Key: k\r\n\r\n")
	hint := rc.response("GET")
	if hint.Start != "HTTP/1.1 103 Early Hints" || hint.Get("Link") != "</app.css>; rel=preload" {
		t.Fatalf("first answer %q, want the shard's 103 with its Link", hint.Raw())
	}
	hintSeen.open()
	if final := rc.response("GET"); final.Status() != 200 || string(final.Payload) != "answer for /first" {
		t.Fatalf("final answer %q", final.Raw())
	}

	for i := range 8 {
		path := []string{"/hints", "/continue", "/plain"}[i%3] + "/" + strconv.Itoa(i)
		// The connection goes back to the pool just after the client has
		// its answer; the next request must find it there to reuse it.
		waitUntil(t, wireTimeout, "the shard connection is back in the pool", func() bool { return p.idleUpstreams(0) == 1 })
		c := dialRaw(t, p)
		c.send("GET " + path + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: k\r\n\r\n")
		final, interim := c.final("GET")
		if string(final.Payload) != "answer for "+path || final.Get(header.Shard) != "raw-0" {
			t.Errorf("%s: answer %q, want its own answer from raw-0", path, final.Raw())
		}
		want := map[string]int{"/hints": 2, "/continue": 1, "/plain": 0}[path[:strings.LastIndexByte(path, '/')]]
		if len(interim) != want {
			t.Errorf("%s: %d interim answers, want %d", path, len(interim), want)
		}
		for _, m := range interim {
			if m.Status() != 103 && m.Status() != 100 {
				t.Errorf("%s: interim answer %q", path, m.Raw())
			}
		}
	}
	if n := shard.connections(); n != 1 {
		t.Errorf("the shard saw %d connections, want the one pooled connection reused", n)
	}
}

// The multipart body, the header lines (names, values, order) and the
// request-target arrive at the shard exactly as the client sent them; the
// proxy only adds X-Forwarded-*.
func TestRequestBytesReachShardVerbatim(t *testing.T) {
	got := make(chan rawMsg, 4)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		got <- req
		return okResponse("ok"), false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))

	// Odd part order (file first), CRLFs and "--" inside content, a
	// preamble and an epilogue: anything that re-encodes loses one of them.
	body := "preamble, ignored\r\n" +
		"------XyZ\r\n" +
		"Content-Disposition: form-data; name=\"upload\"; filename=\"a b.bin\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n" +
		"\x00\x01\r\n--not-a-boundary\r\n\xff\xfe\r\n" +
		"------XyZ\r\n" +
		"content-disposition: form-data; name=\"z\"\r\n\r\n" +
		"last field first\r\n" +
		"------XyZ\r\n" +
		"Content-Disposition: form-data; name=\"a\"\r\n\r\n" +
		"\r\n\r\n" +
		"------XyZ--\r\n" +
		"epilogue\n"
	target := "/up//load/../x/%2e%2E/%41%2f;p=1?q=%20a&b=1+2&&c=&q=%7e"
	head := "POST " + target + " HTTP/1.1\r\n" +
		"Host: files.example:8080\r\n" +
		"x-lower: v1\r\n" +
		"X-Shard-Key: 7\r\n" +
		"X-MiXeD-CaSe:   spaced\t value  \r\n" +
		"X-Dup: b\r\n" +
		"x-dup: a\r\n" +
		"Content-Type: multipart/form-data; boundary=----XyZ\r\n" +
		"Cookie: z=1; a=2\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"

	check := func(t *testing.T, req rawMsg) {
		t.Helper()
		if gotHead := withoutFields(req.Head, "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"); gotHead != head {
			t.Errorf("the shard's head (X-Forwarded-* aside)\n%q\nwant the client's\n%q", gotHead, head)
		}
		if req.Target() != target {
			t.Errorf("target %q, want %q", req.Target(), target)
		}
		if string(req.Body) != body {
			t.Errorf("body\n%q\nwant\n%q", req.Body, body)
		}
		for name, want := range map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": forwardedProto(p), "X-Forwarded-Host": "files.example:8080",
		} {
			if v := req.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("%s = %q, want one %q", name, v, want)
			}
		}
	}
	t.Run("one write", func(t *testing.T) {
		rc := dialRaw(t, p)
		if a := rc.roundTrip(head+body, "POST"); a.Status() != 200 {
			t.Fatalf("answer %q", a.Raw())
		}
		check(t, recv(t, got))
	})
	t.Run("body in pieces", func(t *testing.T) {
		rc := dialRaw(t, p)
		rc.send(head)
		for i := 0; i < len(body); i += 17 {
			rc.send(body[i:min(i+17, len(body))])
		}
		if a, _ := rc.final("POST"); a.Status() != 200 {
			t.Fatalf("answer %q", a.Raw())
		}
		check(t, recv(t, got))
	})
	t.Run("no content type added", func(t *testing.T) {
		rc := dialRaw(t, p)
		for _, req := range []string{
			"POST /plain HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 3\r\n\r\nabc",
			"POST /empty HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n",
		} {
			if a := rc.roundTrip(req, "POST"); a.Status() != 200 {
				t.Fatalf("answer %q", a.Raw())
			}
			r := recv(t, got)
			for _, name := range []string{"Content-Type", "Transfer-Encoding"} {
				if r.Has(name) {
					t.Errorf("%s: the shard got %s %q, which the client never sent", r.Target(), name, r.Get(name))
				}
			}
			if want := strings.Contains(req, "Content-Length"); r.Has("Content-Length") != want {
				t.Errorf("%s: Content-Length present %v, want %v", r.Target(), r.Has("Content-Length"), want)
			}
		}
	})
}

// The client receives the shard's status line, field lines (case, order,
// repeats) and body bytes as written, with X-Shard added: the proxy's
// X-Shard replaces one the shard wrote.
func TestResponseBytesReachClientVerbatim(t *testing.T) {
	answers := map[string]string{
		"/fixed": "HTTP/1.1 299 Quite Fine, Thanks\r\nx-lower: a\r\nX-MiXeD: b\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n" +
			"Content-Type: text/odd;charset=latin1\r\nContent-Length: 7\r\n\r\nh\xe9llo\r\n",
		"/chunked":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-a: 1\r\n\r\n3;ext=\"v\"\r\nabc\r\n00000\r\n\r\n",
		"/empty-reason": "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
		"/spoofed":      "HTTP/1.1 200 OK\r\nX-Shard: somebody-else\r\nContent-Length: 2\r\n\r\nok",
	}
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		return answers[req.Target()], false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	for path, sent := range answers {
		a := rc.roundTrip("GET "+path+" HTTP/1.1\r\nHost: h\r\nX-Shard-Key: k\r\n\r\n", "GET")
		if v := a.Values(header.Shard); len(v) != 1 || v[0] != "raw-0" {
			t.Errorf("%s: X-Shard %q, want one raw-0", path, v)
		}
		want := sent
		if path == "/spoofed" {
			want = withoutFields(sent, header.Shard)
		}
		if got := withoutFields(a.Raw(), header.Shard); got != want {
			t.Errorf("%s: the client got\n%q\nwant what the shard sent\n%q", path, got, want)
		}
	}
}

// Any spelling of "close" in Connection closes the client connection after
// the answer, which says so; a request pipelined behind it is not served.
func TestConnectionCloseFromClient(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	for _, field := range []string{
		"Connection: Close", "connection: close", "Connection: keep-alive, CLOSE",
		"Connection: keep-alive\r\nConnection: close", "CONNECTION:close",
	} {
		t.Run(field, func(t *testing.T) {
			rc := dialRaw(t, p)
			rc.send("GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n" + field + "\r\n\r\n" +
				"GET /b HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
			a := rc.response("GET")
			if a.Status() != 200 || !a.connTokens("close") {
				t.Errorf("answer %q, want 200 with Connection: close", a.Raw())
			}
			rc.closed()
		})
	}
	if n := len(shards[0].Requests()); n != 5 {
		t.Errorf("the shard got %d requests, want 5 (none of the ones behind a close)", n)
	}
}

// Hop-by-hop fields never cross the proxy, in either direction, whatever
// their case; end-to-end ones do.
func TestHopByHopFieldsStripped(t *testing.T) {
	got := make(chan rawMsg, 1)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		got <- req
		return "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nx-secret: 1\r\nKEEP-ALIVE: timeout=5\r\n" +
			"Proxy-Authenticate: Basic\r\nUpgrade: foo/1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n" +
			"X-Kept: yes\r\nContent-Length: 2\r\n\r\nok", false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nconnection: X-Custom, keep-alive\r\nConnection: x-OTHER\r\n"+
		"x-custom: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=5\r\nte: trailers\r\nUpgrade: h2c\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\nX-Shard-Key: 1\r\n\r\n", "GET")
	req := recv(t, got)
	for _, name := range []string{"Connection", "X-Custom", "X-Other", "Keep-Alive", "TE", "Upgrade", "Proxy-Authorization", "Proxy-Connection"} {
		if req.Has(name) {
			t.Errorf("the shard got hop-by-hop %s: %q", name, req.Get(name))
		}
	}
	if req.Get("X-Keep") != "yes" {
		t.Errorf("X-Keep %q at the shard, want yes", req.Get("X-Keep"))
	}
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Proxy-Connection", "TE"} {
		if a.Has(name) {
			t.Errorf("the client got hop-by-hop %s: %q", name, a.Get(name))
		}
	}
	if a.Has("Connection") {
		t.Errorf("the client got Connection %q: the shard's connection is not the client's", a.Values("Connection"))
	}
	if a.Get("X-Kept") != "yes" || string(a.Payload) != "ok" {
		t.Errorf("answer %q, want X-Kept and the body", a.Raw())
	}
}

// HTTP/1.0 clients: no Host is filled with the shard's address; the
// connection closes unless keep-alive was asked for; a chunked answer
// arrives decoded and ends with the connection; no 1xx is sent.
func TestHTTP10Client(t *testing.T) {
	got := make(chan rawMsg, 16)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		got <- req
		switch req.Target() {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n", false
		case "/hints":
			return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + okResponse("final"), false
		}
		return okResponse("ok " + req.Target()), false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))

	t.Run("no host", func(t *testing.T) {
		rc := dialRaw(t, p)
		a := rc.roundTrip("GET /ten HTTP/1.0\r\nX-Shard-Key: 1\r\n\r\n", "GET")
		if a.Status() != 200 || string(a.Payload) != "ok /ten" || !a.connTokens("close") {
			t.Errorf("answer %q, want 200 ok with Connection: close", a.Raw())
		}
		rc.closed()
		req := recv(t, got)
		if req.Start != "GET /ten HTTP/1.1" {
			t.Errorf("request line %q at the shard", req.Start)
		}
		if v := req.Values("Host"); len(v) != 1 || v[0] != shard.addr {
			t.Errorf("Host %q at the shard, want one %q", v, shard.addr)
		}
	})
	t.Run("keep-alive asked", func(t *testing.T) {
		rc := dialRaw(t, p)
		for i := range 3 {
			a := rc.roundTrip("GET /"+strconv.Itoa(i)+" HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nX-Shard-Key: 1\r\n\r\n", "GET")
			if a.Status() != 200 || string(a.Payload) != "ok /"+strconv.Itoa(i) || !a.connTokens("keep-alive") || a.connTokens("close") {
				t.Errorf("answer %d %q, want 200 with Connection: keep-alive", i, a.Raw())
			}
			recv(t, got)
		}
		a := rc.roundTrip("GET /last HTTP/1.0\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET")
		if !a.connTokens("close") {
			t.Errorf("answer without keep-alive asked: %q, want Connection: close", a.Raw())
		}
		rc.closed()
		recv(t, got)
	})
	t.Run("chunked answer decoded", func(t *testing.T) {
		rc := dialRaw(t, p)
		rc.send("GET /chunked HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nX-Shard-Key: 1\r\n\r\n")
		m, err := readRawHead(rc.br)
		if err != nil {
			t.Fatal(err)
		}
		if m.Has("Transfer-Encoding") || m.Has("Content-Length") || !m.connTokens("close") {
			t.Errorf("head %q, want no framing fields and Connection: close", m.Head)
		}
		body, err := io.ReadAll(rc.br) // the body ends with the connection
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != "hello world" {
			t.Errorf("body %q, want the decoded %q", body, "hello world")
		}
		recv(t, got)
	})
	t.Run("no 1xx", func(t *testing.T) {
		rc := dialRaw(t, p)
		a := rc.roundTrip("GET /hints HTTP/1.0\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET")
		if a.Status() != 200 || string(a.Payload) != "final" {
			t.Errorf("first answer %q, want the final 200 (no 1xx to HTTP/1.0)", a.Raw())
		}
		recv(t, got)
	})
}

// A chunked answer's trailers reach an HTTP/1.1 client intact, and the
// connection carries on.
func TestResponseTrailersRelayed(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nTrailer: X-Checksum, X-Other\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: sha256=abc\r\nx-other: 2\r\n\r\n"
	shard := startRawShard(t, eachRequest(func(rawMsg) (string, bool) { return answer, false }))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	for i := range 2 {
		a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nX-Shard-Key: 1\r\n\r\n", "GET")
		if want := answer[strings.Index(answer, "\r\n\r\n")+4:]; string(a.Body) != want {
			t.Errorf("request %d: body %q, want %q", i, a.Body, want)
		}
		if a.Trailer != "X-Checksum: sha256=abc\r\nx-other: 2\r\n\r\n" {
			t.Errorf("request %d: trailer %q", i, a.Trailer)
		}
		if a.Get("Trailer") != "X-Checksum, X-Other" {
			t.Errorf("request %d: Trailer field %q", i, a.Get("Trailer"))
		}
	}
}

// Expect: 100-continue is answered only once the key, owner and size checks
// passed; with a header key the shard's own 100 is relayed.
func TestExpectContinue(t *testing.T) {
	t.Run("no key", func(t *testing.T) {
		shards := testutil.StartShards(t, 1, "web")
		topo := testutil.Topology(shards)
		p := startProxy(t, Config{}, ring.Config{}, &topo)
		rc := dialRaw(t, p)
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		a := rc.response("POST")
		wantJSON(t, a, 400, `{"error":"no shard key","tried":["header:X-Shard-Key"]}`)
		rc.closed() // the body never came: nothing else can be read here
	})
	t.Run("owner not ready", func(t *testing.T) {
		shards := testutil.StartShards(t, 2, "web")
		topo := testutil.Topology(shards)
		topo.Shards[1].Ready = false
		p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
		rc := dialRaw(t, p)
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		wantJSON(t, rc.response("POST"), 503, `{"error":"shard not ready","shard":"web-1"}`)
	})

	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	body := `{"account":{"id":42}}`
	t.Run("body rule, too large", func(t *testing.T) {
		p := startProxy(t, Config{Keys: mustRules(t, "body:account.id"), MaxBodyBytes: 16}, ring.Config{}, &topo)
		rc := dialRaw(t, p)
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
		wantJSON(t, rc.response("POST"), 413, `{"error":"request body too large","limit":16}`)
		rc.closed()
	})
	t.Run("body rule, fits", func(t *testing.T) {
		p := startProxy(t, Config{Keys: mustRules(t, "body:account.id")}, ring.Config{}, &topo)
		rc := dialRaw(t, p)
		rc.send("POST /expect HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
		if c := rc.response("POST"); c.Start != "HTTP/1.1 100 Continue" {
			t.Fatalf("first answer %q, want 100 Continue", c.Raw())
		}
		rc.send(body)
		a, interim := rc.final("POST")
		if a.Status() != 200 || a.Get(header.Shard) != "web-0" || len(interim) != 0 {
			t.Fatalf("answer %q after %d interim, want 200 from web-0 and no second 100", a.Raw(), len(interim))
		}
		var got testutil.Request
		for _, r := range shards[0].Requests() {
			if r.URI == "/expect" {
				got = r
			}
		}
		if string(got.Body) != body || got.Header.Get("Expect") != "" {
			t.Errorf("the shard got body %q and Expect %q, want the body and no Expect (the proxy answered it)", got.Body, got.Header.Get("Expect"))
		}
	})
	t.Run("header key, shard's 100", func(t *testing.T) {
		shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
			head, err := readRawHead(br)
			if err != nil {
				return
			}
			if head.Get("Expect") != "100-continue" {
				io.WriteString(c, okResponse("no expect"))
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			if err := readRawBody(br, &head, false); err != nil {
				return
			}
			io.WriteString(c, okResponse("got "+string(head.Body)))
		})
		p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		rc.send("PUT / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		if c := rc.response("PUT"); c.Start != "HTTP/1.1 100 Continue" {
			t.Fatalf("first answer %q, want the shard's 100 Continue", c.Raw())
		}
		rc.send("hello")
		if a := rc.response("PUT"); a.Status() != 200 || string(a.Payload) != "got hello" {
			t.Fatalf("answer %q, want 200 got hello", a.Raw())
		}
	})
}

// Three requests in one write on one connection are answered in order,
// each by its own key's shard.
func TestPipelinedRequests(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	rc := dialRaw(t, p)
	rc.send("GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 2\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 0\r\nContent-Length: 4\r\n\r\nbody" +
		"GET /c HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
	for _, want := range []string{"web-2", "web-0", "web-1"} {
		a := rc.response("GET")
		if a.Status() != 200 || a.Get(header.Shard) != want || string(a.Payload) != `{"shard":"`+want+`"}` {
			t.Errorf("answer %q, want 200 from %s", a.Raw(), want)
		}
	}
	if r := shards[0].Requests(); len(r) != 1 || r[0].URI != "/b" || string(r[0].Body) != "body" {
		t.Errorf("web-0 got %+v, want POST /b with its body", r)
	}
}

// Two different values of the key header are ambiguous; identical repeats
// are one key.
func TestAmbiguousHeaderKey(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	rc := dialRaw(t, p)
	a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nx-shard-key: 2\r\n\r\n", "GET")
	wantJSON(t, a, 400, `{"error":"ambiguous shard key","rule":"header:X-Shard-Key"}`)
	if a.Has(header.Shard) {
		t.Errorf("X-Shard %q on an answer without an owner", a.Get(header.Shard))
	}
	if a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nx-shard-key: 1\r\n\r\n", "GET"); a.Status() != 200 {
		t.Errorf("identical repeats: answer %q, want 200", a.Raw())
	}
	if n := len(shards[0].Requests()); n != 1 {
		t.Errorf("the shard got %d requests, want 1", n)
	}
}

// A request retried on a fresh connection, because the pooled one was
// closed by the shard as the request arrived, is sent whole: a body that
// came with the head goes again.
func TestRetryOnClosedPooledConnSendsBody(t *testing.T) {
	got := make(chan rawMsg, 4)
	// Each connection serves one request; the next one on it is read and
	// dropped with the connection, as a shard closing an idle connection
	// at the wrong moment does.
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		req, err := readRawRequest(br)
		if err != nil {
			return
		}
		got <- req
		io.WriteString(c, okResponse("got "+string(req.Body)))
		_, _ = readRawRequest(br)
	})
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	if a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET"); a.Status() != 200 {
		t.Fatalf("first answer %q", a.Raw())
	}
	recv(t, got)
	a := rc.roundTrip("PUT / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 5\r\n\r\nhello", "PUT")
	if a.Status() != 200 || string(a.Payload) != "got hello" {
		t.Fatalf("answer %q, want 200 got hello", a.Raw())
	}
	if r := recv(t, got); string(r.Body) != "hello" {
		t.Errorf("the shard got body %q", r.Body)
	}
	if n := shard.connections(); n != 2 {
		t.Errorf("the shard saw %d connections, want 2 (the retry on a fresh one)", n)
	}
}

// Answers without a body whatever their head declares (to HEAD, 204, 304)
// end at their head: the client and the pooled shard connection both stay
// in step for the next request.
func TestBodilessAnswersKeepStep(t *testing.T) {
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		switch req.Target() {
		case "/head":
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n", false
		case "/chunked-head":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false
		case "/204":
			return "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false
		case "/304":
			return "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n", false
		}
		return okResponse("answer for " + req.Target()), false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	for _, tc := range []struct{ method, path string }{
		{"HEAD", "/head"}, {"GET", "/a"}, {"HEAD", "/chunked-head"}, {"GET", "/b"},
		{"GET", "/204"}, {"GET", "/c"}, {"GET", "/304"}, {"GET", "/d"},
	} {
		waitUntil(t, wireTimeout, "the shard connection is back in the pool", func() bool { return p.upstreamsAllIdle(0) || shard.connections() == 0 })
		a := rc.roundTrip(tc.method+" "+tc.path+" HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", tc.method)
		want := "answer for " + tc.path
		if len(tc.path) > 2 { // the bodiless ones
			want = ""
		}
		if string(a.Payload) != want || a.Get(header.Shard) != "raw-0" {
			t.Errorf("%s %s: answer %q, want body %q", tc.method, tc.path, a.Raw(), want)
		}
	}
	if n := shard.connections(); n != 1 {
		t.Errorf("the shard saw %d connections, want one, reused throughout", n)
	}
}
