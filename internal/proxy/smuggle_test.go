package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/ring"
)

// recordingShard is a raw shard that answers 200 to everything and keeps
// every byte it was sent, to show that nothing reached it.
type recordingShard struct {
	*rawShard
	mu  sync.Mutex
	got strings.Builder
}

func startRecordingShard(t *testing.T) *recordingShard {
	s := &recordingShard{}
	s.rawShard = startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			s.mu.Lock()
			s.got.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
			io.WriteString(c, okResponse("served"))
		}
	})
	return s
}

func (s *recordingShard) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

// Every shape that two HTTP implementations could frame or route
// differently is answered 400 at once, the connection closes, and the shard
// receives nothing, not even what follows on the connection.
func TestAmbiguousRequestsRejected(t *testing.T) {
	shard := startRecordingShard(t)
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	const key = "X-Shard-Key: 1\r\n"
	// Behind each case, a request that a confused reader would serve.
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n"
	cases := []struct{ name, req string }{
		{"Content-Length with chunked", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked with Content-Length", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding identity", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: identity\r\n\r\n"},
		{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked misspelled", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon of another field", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key : 1\r\n\r\n"},
		{"space inside the target", "GET /a b HTTP/1.1\r\nHost: h\r\n" + key + "\r\n"},
		{"two different Hosts", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n" + key + "\r\n"},
		{"two identical Hosts", "GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n" + key + "\r\n"},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"a Content-Length list that disagrees", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Content-Length: 5, 6\r\n\r\nhello!"},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Content-Length: +5\r\n\r\nhello"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\n" + key + "X-Long: a\r\n  folded\r\n\r\n"},
		{"obs-fold into Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\n" + key + "Transfer-Encoding: gzip\r\n chunked\r\n\r\n0\r\n\r\n"},
		{"bare LF everywhere", "GET / HTTP/1.1\nHost: h\nX-Shard-Key: 1\n\n"},
		{"bare LF in one field", "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\n\r\n"},
		{"bare CR", "GET / HTTP/1.1\r\nHost: h\rX-Shard-Key: 1\r\n\r\n"},
		{"HTTP/1.0 with Transfer-Encoding", "POST / HTTP/1.0\r\nHost: h\r\n" + key + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n" + key + "\r\n"},
		{"absolute target against Host", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n" + key + "\r\n"},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: h\r\n" + key + "X-A: a\x00b\r\n\r\n"},
		{"field without colon", "GET / HTTP/1.1\r\nHost: h\r\n" + key + "X-A\r\n\r\n"},
		{"fragment in the target", "GET /a#b HTTP/1.1\r\nHost: h\r\n" + key + "\r\n"},
		{"leading whitespace before the first field", "GET / HTTP/1.1\r\n Host: h\r\n" + key + "\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, p)
			// "At once": well under the header timeout and the idle timeout.
			_ = rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			rc.send(tc.req + smuggled)
			a := rc.response("GET")
			wantJSON(t, a, 400, `{"error":"malformed request"}`)
			if !a.connTokens("close") {
				t.Errorf("answer %q, want Connection: close", a.Head)
			}
			rc.closed()
		})
	}
	if got := shard.received(); got != "" || shard.connections() != 0 {
		t.Errorf("the shard received %q on %d connections, want nothing", got, shard.connections())
	}
	// The proxy still serves well-formed requests.
	rc := dialRaw(t, p)
	if a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\n"+key+"\r\n", "GET"); a.Status() != 200 {
		t.Errorf("a good request afterwards: %q", a.Raw())
	}
}

// A head that does not complete within the client header timeout is
// answered 408 and the connection closes, whether the client stalls or
// trickles.
func TestClientHeaderTimeout(t *testing.T) {
	shard := startRecordingShard(t)
	const timeout = 300 * time.Millisecond
	p := startProxy(t, Config{ClientHeaderTimeout: timeout}, ring.Config{}, rawTopology(shard.addr))
	t.Run("half a head", func(t *testing.T) {
		rc := dialRaw(t, p)
		start := time.Now()
		rc.send("GET / HTTP/1.1\r\nHost: h\r\nX-Sha")
		a := rc.response("GET")
		if d := time.Since(start); d < timeout-50*time.Millisecond {
			t.Errorf("answered after %v, before the %v timeout", d, timeout)
		}
		wantJSON(t, a, 408, `{"error":"request header timeout"}`)
		if !a.connTokens("close") {
			t.Errorf("answer %q, want Connection: close", a.Head)
		}
		rc.closed()
	})
	t.Run("trickle", func(t *testing.T) {
		rc := dialRaw(t, p)
		start := time.Now()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			const head = "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			for i := range len(head) {
				if _, err := io.WriteString(rc.c, head[i:i+1]); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond): // the client's pace, not a wait for luck
				}
			}
		}()
		a := rc.response("GET")
		close(stop)
		<-done
		if d := time.Since(start); d > timeout+time.Second {
			t.Errorf("answered after %v: the trickle extended the %v timeout", d, timeout)
		}
		wantJSON(t, a, 408, `{"error":"request header timeout"}`)
		rc.closed()
	})
	if got := shard.received(); got != "" {
		t.Errorf("the shard received %q, want nothing", got)
	}
}

// A chunked request body that breaks its framing gets 400 and its
// connection closes. When the bad bytes came with the head, no shard sees
// anything (the answer names none); when they come later, while the body
// streams, the head has gone to the shard, which never sees a complete
// body (its connection is closed under it), so nothing after the bad bytes
// can pass for a request.
func TestMalformedChunkedBodyRejected(t *testing.T) {
	var mu sync.Mutex
	var heads, bodies []string // what the shard got
	shard := startHTTPShard(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		heads = append(heads, r.RequestURI)
		mu.Unlock()
		if b, err := io.ReadAll(r.Body); err == nil {
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
		}
	})
	headsSeen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(heads)
	}
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard))
	const head = "POST / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n"
	for _, tc := range []struct{ name, body string }{
		{"bare LF", "5\nhello\n0\n\n"},
		{"hex prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"data longer than its size", "3\r\nhello\r\n0\r\n\r\n"},
		{"size too large", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{"space in the size", "5 \r\nhello\r\n0\r\n\r\n"},
		{"bad trailer", "5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"},
	} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, body after the head %v", tc.name, split), func(t *testing.T) {
				rc := dialRaw(t, p)
				n := headsSeen()
				if split {
					rc.send(head)
					waitUntil(t, wireTimeout, "the head reaches the shard", func() bool { return headsSeen() > n })
					rc.send(tc.body + smuggled)
					wantJSON(t, rc.response("POST"), 400, `{"error":"malformed request","shard":"raw-0"}`)
				} else {
					rc.send(head + tc.body + smuggled)
					wantJSON(t, rc.response("POST"), 400, `{"error":"malformed request"}`)
					if got := headsSeen(); got != n {
						t.Errorf("the shard saw the head of a request refused before it was routed")
					}
				}
				rc.closed()
			})
		}
	}
	// The shard may get the heads whose body then broke (they went before
	// the body was looked at), never a complete body, nor what follows.
	mu.Lock()
	defer mu.Unlock()
	for _, uri := range heads {
		if uri != "/" {
			t.Errorf("the shard got %s", uri)
		}
	}
	for _, b := range bodies {
		t.Errorf("the shard read a complete body %q", b)
	}
}
