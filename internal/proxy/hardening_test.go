package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A shard that sends its answer's head a byte at a time, for ever, gets
// 504 once the upstream timeout has passed since the request: the bound
// is on the whole head, not between two of its bytes (HAProxy's too).
// Under a per-read bound the answer would never come, and the client's
// read deadline would fail the test.
func TestSlowAnswerHeadIsBoundedInTotal(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		head := "HTTP/1.1 200 OK\r\nX-Pad: " // never ends
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			b := "a"
			if i < len(head) {
				b = head[i : i+1]
			}
			if _, err := io.WriteString(c, b); err != nil {
				return
			}
		}
	})
	p := startProxy(t, Config{UpstreamTimeout: 300 * time.Millisecond}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET")
	if a.Status() != 504 {
		t.Fatalf("answer %q, want 504 shard timeout", a.Head)
	}
}

// A request whose chunked body starts malformed, in bytes that came with
// its head, is answered 400 before any shard sees the head: a handler
// that ignores its body cannot act on a request the client was told was
// refused. (The shard accepts no connection at all.)
func TestMalformedFirstChunkReachesNoShard(t *testing.T) {
	for name, body := range map[string]string{
		"100 leading zeros":   strings.Repeat("0", 100) + "5\r\nhello\r\n0\r\n\r\n",
		"size past 64 bits":   "1ffffffffffffffff\r\nx\r\n0\r\n\r\n",
		"70 KB extension":     "5;" + strings.Repeat("e", 70<<10) + "\r\nhello\r\n0\r\n\r\n",
		"not hex":             "zz\r\nhello\r\n0\r\n\r\n",
		"bare LF after size":  "5\nhello\r\n0\r\n\r\n",
		"negative size":       "-5\r\nhello\r\n0\r\n\r\n",
		"space inside number": "5 5\r\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			shard := startRawShard(t, eachRequest(func(rawMsg) (string, bool) {
				return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
			}))
			p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
			rc := dialRaw(t, p)
			go func() { // the 70 KB line may not fit the proxy's buffer: written aside
				_, _ = io.WriteString(rc.c, "POST /x HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
			}()
			a, _ := rc.final("POST")
			if a.Status() != 400 {
				t.Fatalf("answer %q, want 400", a.Head)
			}
			if n := shard.connections(); n != 0 {
				t.Errorf("the shard accepted %d connections, want none", n)
			}
		})
	}
}

// --max-request-body-bytes: a declared length over it is answered 413 at
// once, without 100 Continue, and no shard is contacted; a body of
// unknown length that passes it mid-stream is cut, the shard connection
// closed, and the client answered 413.
func TestMaxRequestBodyBytes(t *testing.T) {
	const limit = 64 << 10
	got := make(chan int, 4) // body bytes each shard request delivered
	shard := startHTTPShard(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- int(n)
		w.WriteHeader(200)
	})
	raw := startRawShard(t, eachRequest(func(rawMsg) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	}))
	p := startProxy(t, Config{MaxRequestBodyBytes: limit}, ring.Config{Algorithm: ring.Modulus}, rawTopology(raw.addr, shard))

	t.Run("declared, with Expect", func(t *testing.T) {
		rc := dialRaw(t, p)
		rc.send(fmt.Sprintf("PUT /x HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 0\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", 200<<20))
		a, interim := rc.final("PUT")
		if a.Status() != 413 || len(interim) > 0 || !strings.Contains(string(a.Payload), fmt.Sprint(limit)) {
			t.Fatalf("answer %q %q after %d interim answers, want 413 naming the limit and no 100 Continue", a.Head, a.Payload, len(interim))
		}
		if n := raw.connections(); n != 0 {
			t.Errorf("the shard accepted %d connections, want none", n)
		}
	})
	t.Run("chunked, past the limit mid-stream", func(t *testing.T) {
		rc := dialRaw(t, p)
		rc.send("POST /x HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 16<<10, strings.Repeat("a", 16<<10))
		go func() {
			for range 8 { // 128 KiB, twice the limit; the proxy stops reading at the limit
				if _, err := io.WriteString(rc.c, chunk); err != nil {
					return
				}
			}
		}()
		a, _ := rc.final("POST")
		if a.Status() != 413 {
			t.Fatalf("answer %q, want 413", a.Head)
		}
		if n := recv(t, got); n > limit {
			t.Errorf("the shard received %d body bytes, want at most the limit %d", n, limit)
		}
	})
	// Counted once the exchange ends, just after its answer went out.
	waitUntil(t, wireTimeout, "requests_total{shard=raw-1,code=413} is 1", func() bool {
		return p.metric("shard_proxy_requests_total", "shard", "raw-1", "code", "413", "protocol", "http1") == 1
	})
}

// Upgrade: only the protocols the proxy can route are tunnelled. An h2c
// upgrade (whose streams of every key would all reach the first key's
// shard) is forwarded without its Upgrade field, and the HTTP2-Settings
// field its Connection names is dropped too: the shard answers plainly.
func TestUpgradeOnlyToRoutableProtocols(t *testing.T) {
	seen := make(chan rawMsg, 1)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		seen <- req
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	for _, upgrade := range []string{"h2c", "websocket, h2c", "H2C"} {
		rc := dialRaw(t, p)
		a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+upgrade+"\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", "GET")
		req := recv(t, seen)
		if a.Status() != 200 || req.Has("Upgrade") || req.Has("HTTP2-Settings") || strings.Contains(strings.ToLower(req.Get("Connection")), "upgrade") {
			t.Errorf("Upgrade: %s: answer %d; the shard got %q, want no Upgrade, HTTP2-Settings or Connection: upgrade", upgrade, a.Status(), req.Head)
		}
	}
}

// countingH2Shard is an h2c shard that counts the requests it received,
// by path.
func countingH2Shard(t testing.TB) (watch.Topology, func(path string) int) {
	var mu sync.Mutex
	seen := map[string]int{}
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	return topo, func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[path]
	}
}

// The relay refuses a request head that an HTTP/1.1 hop or another server
// could read differently (RFC 9113 §8.1.1, §8.2.1, §8.3.1): the stream is
// reset with PROTOCOL_ERROR, the shard sees nothing, and the connection
// goes on.
func TestRelayRefusesHeadsReadTwoWays(t *testing.T) {
	topo, seen := countingH2Shard(t)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	head := func(method, path string, extra ...string) []hpack.HeaderField {
		return reqHead(method, path, "k", extra...)
	}
	for _, tc := range []struct {
		name string
		head []hpack.HeaderField
	}{
		{"a space in :method", head("GET /smug", "/m")},
		{"an empty :method", head("", "/m")},
		{"a space in :path", head("GET", "/m HTTP/1.1\r\nX: y")},
		{"a control byte in :path", head("GET", "/m\x01")},
		{"a byte past ASCII in :path", head("GET", "/m\xc3\xa9")},
		{"* for GET", head("GET", "*")},
		{"content-length +5", head("POST", "/m", "content-length", "+5")},
		{"content-length with a space", head("POST", "/m", "content-length", "5 ")},
		{"content-length -0", head("POST", "/m", "content-length", "-0")},
		{"host other than :authority", head("GET", "/m", "host", "other.test")},
		{"a value with trailing white space", head("GET", "/m", "x-shard-tenant", "a ")},
		{"a value with leading white space", head("GET", "/m", "x-shard-tenant", "\ta")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := c.newStream()
			c.mustHeaders(t, id, tc.head, true)
			a := c.answer(t, id)
			if !a.reset || a.code != http2.ErrCodeProtocol || len(a.heads) > 0 {
				t.Fatalf("answer %v: want RST_STREAM PROTOCOL_ERROR and no answer", a)
			}
			if a := c.get(t, "/ok", "k"); a.status() != "200" {
				t.Fatalf("next request on the connection: %v", a)
			}
		})
	}
	if n := seen("/m") + seen("/m HTTP/1.1") + seen("*"); n != 0 {
		t.Errorf("the shard received %d of the refused requests, want none", n)
	}
	// A host equal to :authority but for case is the same entity.
	if a := c.get(t, "/same", "k", "host", "SHARD.test"); a.status() != "200" {
		t.Errorf("host differing only in case: %v, want 200", a)
	}
}

// Stream ids (RFC 9113 §5.1.1): a HEADERS frame that opens a stream with an
// id already used, or lower than one used, is a connection error: GOAWAY
// PROTOCOL_ERROR, never a stream left waiting for ever.
func TestRelayStreamIDRules(t *testing.T) {
	topo, seen := countingH2Shard(t)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	for _, tc := range []struct {
		name string
		id   uint32
	}{
		{"a reused id", 3},             // the stream /first used
		{"a lower id never opened", 1}, // skipped before /first
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRelay(t, p.url, bigWindows)
			if skipped := c.newStream(); skipped != 1 {
				t.Fatalf("first id %d, want 1", skipped)
			}
			if a := c.get(t, "/first", "k"); a.status() != "200" { // stream 3
				t.Fatalf("first request: %v", a)
			}
			c.mustHeaders(t, tc.id, reqHead("GET", "/again", "k"), true)
			ev := c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
			if ev.code != http2.ErrCodeProtocol {
				t.Fatalf("%v, want GOAWAY PROTOCOL_ERROR", ev)
			}
		})
	}
	if n := seen("/again"); n != 0 {
		t.Errorf("the shard received %d requests on reused ids, want none", n)
	}
}

// --max-request-body-bytes on the relay: a declared length over it is
// answered 413 without contacting the shard; DATA past it without one
// cuts the stream (the shard's is reset) and is answered 413.
func TestRelayMaxRequestBodyBytes(t *testing.T) {
	const limit = 32 << 10
	topo, seen := countingH2Shard(t)
	p := startProxy(t, Config{MaxRequestBodyBytes: limit}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)

	id := c.newStream()
	c.mustHeaders(t, id, reqHead("POST", "/declared", "k", "content-length", fmt.Sprint(limit+1)), false)
	if a := c.answer(t, id); a.status() != "413" || !strings.Contains(string(a.body), fmt.Sprint(limit)) {
		t.Fatalf("declared over the limit: %v %q, want 413 naming the limit", a, a.body)
	}
	if n := seen("/declared"); n != 0 {
		t.Errorf("the shard received %d requests declared over the limit, want none", n)
	}

	id = c.newStream()
	c.mustHeaders(t, id, reqHead("POST", "/streamed", "k"), false)
	for range 3 { // 48 KiB in 16 KiB frames
		if err := c.data(id, relayBytes(16<<10), false); err != nil {
			break // the relay may reset the stream first
		}
	}
	if a := c.answer(t, id); a.status() != "413" {
		t.Fatalf("streamed past the limit: %v, want 413", a)
	}
}

// HTTP/2 clients of HTTP/1.1 shards (through the relay) get a reset for
// what a shard could read two ways, and never an upgrade on an HTTP/2
// stream (RFC 9113 §8.6).
func TestHTTP2ToHTTP1Refusals(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	addr := startHTTPShard(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/switch" {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(addr))
	c, isRelay := dialH2(t, p.url)
	if !isRelay {
		t.Fatal("an HTTP/1.1 shard's client connection did not go to the relay")
	}
	id := c.newStream()
	c.mustHeaders(t, id, reqHead("POST", "/twolengths", "k", "content-length", "3", "content-length", "+3"), false)
	_ = c.data(id, []byte("abc"), true)
	if a := c.answer(t, id); a.status() != "400" && !(a.reset && len(a.heads) == 0) {
		t.Errorf("two content-length values: %v, want 400 or a reset", a)
	}
	if a := c.get(t, "/switch", "k"); a.status() != "502" {
		t.Errorf("a 101 from the shard: %v, want 502", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/twolengths"] != 0 {
		t.Errorf("the shard received the request with two content-lengths")
	}
}

// A client that does not read costs the relay a bounded amount, however
// many streams it opens: each stream's window towards the shard starts
// small (16 KiB) and grows only as its client takes what was sent, within
// a budget per client connection (1 MiB). Before, each stream could leave
// 64 KiB with the relay (6.4 MiB per connection of 100 streams). Once the
// client reads, every answer arrives whole.
func TestRelayHoldsBoundedAnswersForAStalledClient(t *testing.T) {
	const streams, answer = 100, 256 << 10
	body := relayBytes(answer)
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, dialOpts{window: 0, connWindow: 1 << 30})
	ids := make([]uint32, streams)
	for i := range ids {
		ids[i] = c.newStream()
		c.mustHeaders(t, ids[i], reqHead("GET", fmt.Sprintf("/big/%d", i), "k"), true)
	}
	// Every stream fills the window it starts with, and no more: the
	// client has taken nothing, so no window grew.
	const held = streams * 16 << 10
	waitUntil(t, wireTimeout, fmt.Sprintf("the relay holds %d bytes", held), func() bool { return p.relay.Held() >= held })
	if got := p.relay.Held(); got > held {
		t.Fatalf("the relay holds %d bytes for a client that reads nothing, want at most %d", got, held)
	}
	// The client reads: every answer arrives, whole.
	if err := c.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		a := c.answer(t, id)
		if a.status() != "200" || !bytes.Equal(a.body, body) {
			t.Fatalf("stream %d: %v with %d bytes, want 200 and the %d-byte body", id, a, len(a.body), answer)
		}
	}
	if got := p.relay.Held(); got != 0 {
		t.Errorf("the relay still holds %d bytes after every answer was read", got)
	}
}

// The relay speaks HTTP/1.1 to an HTTP/1.1 shard: a request body without
// a content-length goes chunked, with the client's trailers; the shard's
// chunked answer comes back as DATA, its trailers as trailers; the shard
// connection is reused.
func TestRelayToHTTP1Shard(t *testing.T) {
	got := make(chan rawMsg, 2)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		got <- req
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-Answer: yes\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	c := dialRelay(t, p.url, bigWindows)
	for range 2 {
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("POST", "/up?q=1", "k"), false)
		c.mustData(t, id, []byte("abc"), false)
		c.mustData(t, id, []byte("def"), false)
		c.mustHeaders(t, id, hf("x-check", "ok"), true)
		a := c.answer(t, id)
		if a.status() != "200" || string(a.body) != "hello world" || a.get("x-answer") != "yes" ||
			a.get("x-shard") != "raw-0" || fieldValue(a.trailer, "x-sum") != "42" {
			t.Fatalf("answer %v body %q trailer %v, want 200 \"hello world\" with x-sum 42", a, a.body, a.trailer)
		}
		req := recv(t, got)
		if req.Start != "POST /up?q=1 HTTP/1.1" || req.Get("Transfer-Encoding") != "chunked" ||
			string(req.Payload) != "abcdef" || !strings.Contains(req.Trailer, "x-check: ok") {
			t.Fatalf("the shard got %q %q trailer %q, want a chunked POST of abcdef with x-check", req.Head, req.Payload, req.Trailer)
		}
		// The client may see the end before the exchange gives the
		// connection back.
		waitUntil(t, wireTimeout, "the shard connection is back in the pool", func() bool { return p.upstreamsAllIdle(0) })
	}
	if n := shard.connections(); n != 1 {
		t.Errorf("the shard accepted %d connections for two exchanges, want 1 (pooled)", n)
	}
}

// FuzzRelayHTTP1Answers: whatever bytes an HTTP/1.1 shard answers with, a
// relayed HTTP/2 stream gets an answer, an error of the proxy's or a
// reset within its bound (never a hang, never a crash), and the relay
// goes on serving: the next stream, answered properly, arrives whole.
func FuzzRelayHTTP1Answers(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nX-Shard: spoofed\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	var mu sync.Mutex
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	shard := startRawShard(f, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		mu.Lock()
		a := answer
		mu.Unlock()
		_, _ = c.Write(a)
	})
	p := startProxy(f, Config{UpstreamTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)}, ring.Config{}, rawTopology(shard.addr))
	setAnswer := func(a []byte) {
		mu.Lock()
		answer = a
		mu.Unlock()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		setAnswer(data)
		c := dialRelay(t, p.url, bigWindows)
		defer c.close()
		done := make(chan h2answer, 1)
		go func() { done <- c.get(t, "/fuzz", "k") }()
		select {
		case a := <-done:
			if s := a.status(); s != "" && s < "200" {
				t.Fatalf("a final answer with status %s", s)
			}
		case <-time.After(fuzzWait):
			t.Fatalf("no answer within %v for %q\n%s", fuzzWait, data, allStacks())
		}
		setAnswer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		if a := c.get(t, "/next", "k"); a.status() != "200" || string(a.body) != "ok" || a.get("x-shard") != "raw-0" {
			t.Fatalf("after %q the next stream got %v %q", data, a, a.body)
		}
	})
}
