package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/ring"
)

// mutate applies a few random edits to msg, biased towards the bytes that
// decide framing: separators, whitespace, line ends, digits.
func mutate(rng *rand.Rand, msg []byte) []byte {
	const special = " \t\r\n:,;=\x00\x7f\xff0123456789abcdefABCDEF-\"\\/?#%"
	b := append([]byte(nil), msg...)
	for range 1 + rng.IntN(4) {
		if len(b) == 0 {
			b = append(b, special[rng.IntN(len(special))])
			continue
		}
		i := rng.IntN(len(b))
		switch rng.IntN(6) {
		case 0: // replace
			b[i] = special[rng.IntN(len(special))]
		case 1: // insert
			b = append(b[:i], append([]byte{special[rng.IntN(len(special))]}, b[i:]...)...)
		case 2: // delete
			b = append(b[:i], b[i+1:]...)
		case 3: // duplicate a stretch
			j := min(len(b), i+1+rng.IntN(40))
			b = append(b[:j], append(append([]byte(nil), b[i:j]...), b[j:]...)...)
		case 4: // any byte
			b[i] = byte(rng.IntN(256))
		case 5: // cut
			b = b[:i]
		}
	}
	return b
}

// randomBytes is up to n bytes of noise, sometimes printable.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, 1+rng.IntN(n))
	for i := range b {
		if rng.IntN(2) == 0 {
			b[i] = byte(0x20 + rng.IntN(0x5f))
		} else {
			b[i] = byte(rng.IntN(256))
		}
	}
	return b
}

// readAnswers reads everything the proxy sends until it closes, and checks
// that it is a sequence of well-formed responses.
func readAnswers(c net.Conn, deadline time.Duration) ([]rawMsg, error) {
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	all, err := io.ReadAll(c)
	if err != nil && !errIsClosed(err) {
		return nil, fmt.Errorf("no end within %v (%v), after %q", deadline, err, all)
	}
	br := bufio.NewReader(bytes.NewReader(all))
	var out []rawMsg
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return out, nil
		}
		m, err := readRawResponse(br, "GET")
		if err != nil {
			return out, fmt.Errorf("malformed answer %q: %v (all: %q)", m.Raw(), err, all)
		}
		if !strings.HasPrefix(m.Start, "HTTP/1.1 ") {
			return out, fmt.Errorf("status line %q", m.Start)
		}
		out = append(out, m)
	}
}

// Random and mutated bytes from clients never crash or hang the proxy:
// each connection gets well-formed answers (400 for what cannot be read)
// and ends; what reaches the shard is something Go's server can read.
func TestRandomClientBytes(t *testing.T) {
	var mu sync.Mutex
	var unreadable []string
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				if err != io.EOF && !errIsClosed(err) && !strings.Contains(err.Error(), "use of closed") {
					mu.Lock()
					unreadable = append(unreadable, err.Error())
					mu.Unlock()
				}
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, okResponse("ok")); err != nil {
				return
			}
		}
	})
	const short = 200 * time.Millisecond
	p := startProxy(t, Config{
		ClientHeaderTimeout: short, ClientBodyTimeout: short, IdleTimeout: short, UpstreamTimeout: time.Second,
	}, ring.Config{}, rawTopology(shard.addr))

	valid := []string{
		"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 5\r\n\r\nhello",
		"POST /c HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nX-Shard-Key: 1\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
	}
	const iterations, workers = 400, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range iterations / workers {
				var msg []byte
				switch i % 4 {
				case 0:
					msg = randomBytes(rng, 600)
				default:
					msg = mutate(rng, []byte(valid[rng.IntN(len(valid))]))
				}
				c, err := net.Dial("tcp", p.rawAddr())
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = c.Write(msg)
				answers, err := readAnswers(c, 5*time.Second)
				c.Close()
				if err != nil {
					t.Errorf("sent %q: %v", msg, err)
					continue
				}
				for _, a := range answers {
					if s := a.Status(); s == 502 || s == 500 {
						t.Errorf("sent %q: answer %q", msg, a.Raw())
					}
				}
			}
		})
	}
	wg.Wait()
	rc := dialRaw(t, p)
	if a := rc.roundTrip(valid[0], "GET"); a.Status() != 200 {
		t.Errorf("a good request afterwards: %q", a.Raw())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range unreadable {
		t.Errorf("the shard got a request Go's server cannot read: %s", u)
	}
}

// Random and mutated answers from a shard never crash or hang the proxy:
// the client gets a well-formed head carrying X-Shard (the shard's or a
// 502), possibly a truncated body, and the end of the connection; the
// proxy serves normally afterwards.
func TestRandomShardBytes(t *testing.T) {
	valid := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: T\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nuntil close",
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	var answer []byte
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		mu.Lock()
		b := answer
		mu.Unlock()
		_, _ = c.Write(b)
	})
	p := startProxy(t, Config{UpstreamTimeout: 300 * time.Millisecond}, ring.Config{}, rawTopology(shard.addr))
	statuses := map[int]int{}
	for i := range 200 {
		mu.Lock()
		if i%4 == 0 {
			answer = randomBytes(rng, 400)
		} else {
			answer = mutate(rng, []byte(valid[rng.IntN(len(valid))]))
		}
		sent := answer
		mu.Unlock()
		c, err := net.Dial("tcp", p.rawAddr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for {
			m, err := readRawHead(br)
			if err != nil {
				if !errIsClosed(err) {
					t.Errorf("shard sent %q: the client's read ended with %v", sent, err)
				}
				break
			}
			if v := m.Values(header.Shard); m.Status() >= 200 && (len(v) != 1 || v[0] != "raw-0") {
				t.Errorf("shard sent %q: the client got head %q without its one X-Shard", sent, m.Head)
			}
			statuses[m.Status()]++
			if m.Status() >= 200 {
				rest, err := io.ReadAll(br)
				if err != nil && !errIsClosed(err) {
					t.Errorf("shard sent %q: after the head %q the connection did not end: %v", sent, m.Head, err)
				}
				if s := m.Status(); (s == 502 || s == 504) && m.Get("Content-Type") == "application/json" &&
					!bytes.Contains(rest, []byte(`"shard":"raw-0"`)) {
					t.Errorf("shard sent %q: the proxy's answer %q%s", sent, m.Head, rest)
				}
				break
			}
		}
		c.Close()
	}
	t.Logf("answers by status: %v", statuses)
	mu.Lock()
	answer = []byte(valid[0])
	mu.Unlock()
	rc := dialRaw(t, p)
	if a := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET"); a.Status() != 200 || string(a.Payload) != "hello" {
		t.Errorf("a good answer afterwards: %q", a.Raw())
	}
}
