package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/ring"
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
