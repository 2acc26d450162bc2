package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

// rawShard is a real socket server that reads each request (head and
// Content-Length body) and lets answer write whatever bytes it likes:
// framings, interim answers, closes and malformed heads that a net/http
// server would never send. It records every request and counts the
// connections it accepted.
type rawShard struct {
	addr   string
	conns  atomic.Int64
	mu     sync.Mutex
	got    []shardRequest
	answer func(n int, req shardRequest, c net.Conn) bool // false closes the connection
}

type shardRequest struct {
	head string
	body []byte
	conn int64 // which connection, from 1
}

func startRawShard(t *testing.T, answer func(n int, req shardRequest, c net.Conn) bool) *rawShard {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawShard{addr: ln.Addr().String(), answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			id := s.conns.Add(1)
			wg.Go(func() { s.serve(c, id) })
			t.Cleanup(func() { c.Close() })
		}
	})
	return s
}

func (s *rawShard) serve(c net.Conn, id int64) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if line == "\r\n" {
				break
			}
		}
		req := shardRequest{head: head.String(), body: make([]byte, n), conn: id}
		if _, err := io.ReadFull(br, req.body); err != nil {
			return
		}
		s.mu.Lock()
		s.got = append(s.got, req)
		count := len(s.got)
		s.mu.Unlock()
		if !s.answer(count, req, c) {
			return
		}
	}
}

func (s *rawShard) requests() []shardRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]shardRequest(nil), s.got...)
}

// writes answers every request with the same bytes.
func writes(answer string) func(int, shardRequest, net.Conn) bool {
	return func(_ int, _ shardRequest, c net.Conn) bool {
		_, err := io.WriteString(c, answer)
		return err == nil
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = func(ctx context.Context, t Target) (net.Conn, error) { return d.DialContext(ctx, "tcp", t.Addr) }
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

func mustRequest(t *testing.T, method, target string, h http.Header, body []byte) *Request {
	t.Helper()
	r, err := NewRequest(method, target, h, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// do runs one exchange in a group of its own.
func do(c *Client, t Target, r *Request, limit int, timeout time.Duration) (Answer, error) {
	g := c.Group(context.Background(), 1)
	defer g.Close()
	return g.Do(0, t, r, nil, time.Now().Add(timeout), limit)
}

// Every framing an answer can have is read to its end, its body kept up
// to the limit, and the connection reused exactly when the answer ended
// cleanly on a message boundary: a second request on the same shard opens
// a new connection only after an answer that could not be reused.
func TestAnswersByFraming(t *testing.T) {
	big := strings.Repeat("x", 100)
	for _, tt := range []struct {
		name, method, answer string
		status               int
		body                 string
		truncated, reused    bool
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, true},
		{"empty length", "GET", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, "", false, true},
		{"length over the limit", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + big, 200, big[:10], true, true},
		{"length over limit and drain", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("y", 1000), 200, strings.Repeat("y", 10), true, false},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n", 200, "abcde", false, true},
		{"chunked over the limit", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + big + "\r\n0\r\n\r\n", 200, big[:10], true, true},
		{"interim answers first", "POST", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nk", 201, "k", false, true},
		{"head with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 200, "", false, true},
		{"no content", "DELETE", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", false, true},
		{"until close", "GET", "HTTP/1.1 500 Internal Server Error\r\n\r\nboom", 500, "boom", false, false},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, false},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, true},
		{"bytes past the answer", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY", 200, "ok", false, false},
		{"switching protocols", "GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 101, "", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startRawShard(t, func(_ int, _ shardRequest, c net.Conn) bool {
				_, err := io.WriteString(c, tt.answer)
				return err == nil && !strings.Contains(tt.answer, "boom")
			})
			c := newClient(t, Config{MaxDrain: 100})
			r := mustRequest(t, tt.method, "/x", nil, nil)
			for range 2 {
				a, err := do(c, Target{Addr: s.addr}, r, 10, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if a.Status != tt.status || a.Body != tt.body || a.Truncated != tt.truncated {
					t.Fatalf("answer %+v, want status %d body %q truncated %v", a, tt.status, tt.body, tt.truncated)
				}
			}
			if want := map[bool]int64{true: 1, false: 2}[tt.reused]; s.conns.Load() != want {
				t.Errorf("two requests took %d connections, want %d", s.conns.Load(), want)
			}
		})
	}
}

// A malformed answer fails the exchange (never reported as an answer) and
// its connection is not reused.
func TestMalformedAnswers(t *testing.T) {
	for name, answer := range map[string]string{
		"bare LF":             "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"length and chunked":  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"bad chunk size":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"short body":          "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
		"head over the limit": "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := startRawShard(t, func(_ int, _ shardRequest, c net.Conn) bool {
				_, _ = io.WriteString(c, answer)
				return false
			})
			c := newClient(t, Config{MaxHead: 4096})
			a, err := do(c, Target{Addr: s.addr}, mustRequest(t, "GET", "/", nil, nil), 10, 5*time.Second)
			if err == nil || errors.Is(err, ErrTimeout) {
				t.Fatalf("answer %+v, error %v; want a failure that is not a timeout", a, err)
			}
			if open, idle := c.Stats(Target{Addr: s.addr}); open != 0 || idle != 0 {
				t.Errorf("after a malformed answer: %d open, %d idle; want the connection closed", open, idle)
			}
		})
	}
}

// The head is written once for every shard: the request line, the shard's
// Host, the caller's fields (sorted, framing and Expect ours), the
// body's length and the body; the trace lines, when given, replace the
// caller's.
func TestRequestAsTheShardGetsIt(t *testing.T) {
	s := startRawShard(t, writes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	c := newClient(t, Config{})
	h := http.Header{
		"X-B": {"2"}, "X-A": {" 1 ", "one"}, "Content-Length": {"99"}, "Expect": {"100-continue"},
		"Host": {"elsewhere"}, "Traceparent": {"00-caller"}, "Tracestate": {"k=v"},
	}
	r := mustRequest(t, "PUT", "/cache/evict?x=%20y", h, []byte("body"))
	g := c.Group(context.Background(), 2)
	defer g.Close()
	for _, trace := range [][]byte{nil, []byte("Traceparent: 00-ours\r\n")} {
		if _, err := g.Do(0, Target{Addr: s.addr}, r, trace, time.Now().Add(5*time.Second), 10); err != nil {
			t.Fatal(err)
		}
	}
	got := s.requests()
	if len(got) != 2 {
		t.Fatalf("shard got %d requests, want 2", len(got))
	}
	fields := "X-A: 1\r\nX-A: one\r\nX-B: 2\r\nContent-Length: 4\r\n"
	want := []string{
		"PUT /cache/evict?x=%20y HTTP/1.1\r\nHost: " + s.addr + "\r\n" + fields + "Traceparent: 00-caller\r\nTracestate: k=v\r\n\r\n",
		"PUT /cache/evict?x=%20y HTTP/1.1\r\nHost: " + s.addr + "\r\n" + fields + "Traceparent: 00-ours\r\n\r\n",
	}
	for i := range got {
		if got[i].head != want[i] || string(got[i].body) != "body" {
			t.Errorf("request %d:\n%q %q\nwant\n%q %q", i, got[i].head, got[i].body, want[i], "body")
		}
	}
	// A POST without a body says so; a GET does not.
	for method, wantLine := range map[string]bool{"POST": true, "GET": false} {
		if _, err := do(c, Target{Addr: s.addr}, mustRequest(t, method, "/", nil, nil), 10, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		last := s.requests()[len(s.requests())-1].head
		if strings.Contains(last, "Content-Length: 0\r\n") != wantLine {
			t.Errorf("%s without a body sent %q; want Content-Length: 0 %v", method, last, wantLine)
		}
	}
}

func TestNewRequestRefusesWhatCannotBeWritten(t *testing.T) {
	for _, tt := range []struct {
		method, target string
		h              http.Header
	}{
		{"GET /", "/", nil},
		{"GET", "/a b", nil},
		{"GET", "", nil},
		{"GET", "/", http.Header{"X-A": {"a\r\nX-Evil: 1"}}},
		{"GET", "/", http.Header{"X A": {"1"}}},
	} {
		if _, err := NewRequest(tt.method, tt.target, tt.h, nil); err == nil {
			t.Errorf("NewRequest(%q, %q, %v) succeeded, want an error", tt.method, tt.target, tt.h)
		}
	}
}

// A pooled connection the shard closed as the request went (it read the
// request and hung up without a byte of answer) is not the shard's answer:
// the request is sent again on a new connection, and the shard, which
// recognises a repeat by its Idempotency-Key, answers it there.
func TestReusedConnectionClosedByTheShardIsSentAgain(t *testing.T) {
	s := startRawShard(t, func(n int, _ shardRequest, c net.Conn) bool {
		if n == 2 {
			return false // the second request: hung up on
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	c := newClient(t, Config{})
	r := mustRequest(t, "POST", "/", http.Header{"Idempotency-Key": {"k1"}}, nil)
	for i := range 2 {
		if a, err := do(c, Target{Addr: s.addr}, r, 10, 5*time.Second); err != nil || a.Body != "ok" {
			t.Fatalf("request %d: %+v, %v; want ok", i, a, err)
		}
	}
	got := s.requests()
	if len(got) != 3 || got[1].conn != 1 || got[2].conn != 2 {
		t.Fatalf("shard got %d requests; want 3: the first two on connection 1, the repeat on connection 2: %+v", len(got), got)
	}
	// A fresh connection that fails is reported, not sent again.
	s2 := startRawShard(t, func(int, shardRequest, net.Conn) bool { return false })
	if _, err := do(c, Target{Addr: s2.addr}, r, 10, 5*time.Second); err == nil {
		t.Error("a shard that hangs up on a new connection: no error")
	}
	if n := len(s2.requests()); n != 1 {
		t.Errorf("a fresh connection's failure sent the request %d times, want 1", n)
	}
}

// No more than MaxConns connections reach a shard: an exchange beyond the
// bound waits for one to be free and reuses it, or fails with ErrTimeout
// at its deadline.
func TestConnectionsPerTargetAreBounded(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int64
	s := startRawShard(t, func(_ int, req shardRequest, c net.Conn) bool {
		if strings.HasPrefix(req.head, "GET /hold") {
			held.Add(1)
			<-release
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return err == nil
	})
	c := newClient(t, Config{MaxConns: 2})
	tg := Target{Addr: s.addr}
	hold := mustRequest(t, "GET", "/hold", nil, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			_, err := do(c, tg, hold, 10, 10*time.Second)
			errs <- err
		})
	}
	if !waitFor(func() bool { return held.Load() == 2 }) {
		t.Fatalf("the shard holds %d requests, want 2", held.Load())
	}
	// The bound is reached: a further exchange waits, and gives up at its
	// deadline.
	if _, err := do(c, tg, mustRequest(t, "GET", "/quick", nil, nil), 10, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("an exchange past the bound: %v, want ErrTimeout", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections for 3 exchanges with a bound of 2, want 2", n)
	}
	if open, idle := c.Stats(tg); open != 2 || idle != 2 {
		t.Errorf("after the exchanges: %d open, %d idle; want 2 and 2", open, idle)
	}
}

// Ending a group's context ends its exchanges at once, whatever their
// deadline: each fails with the context's error, not as a timeout.
func TestGroupEndInterruptsItsExchanges(t *testing.T) {
	s := startRawShard(t, func(_ int, _ shardRequest, c net.Conn) bool {
		_, _ = c.Read(make([]byte, 1)) // no answer: held until the client hangs up
		return false
	})
	c := newClient(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	g := c.Group(ctx, 3)
	defer g.Close()
	r := mustRequest(t, "GET", "/", nil, nil)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := g.Do(i, Target{Addr: s.addr}, r, nil, time.Now().Add(time.Minute), 10)
			errs <- err
		}()
	}
	if !waitFor(func() bool { return len(s.requests()) == 3 }) {
		t.Fatalf("the shard got %d requests, want 3", len(s.requests()))
	}
	start := time.Now()
	cancel()
	for range 3 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("exchange ended with %v, want context.Canceled", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the exchanges ended %v after the group's end", d)
	}
	if _, err := g.Do(0, Target{Addr: s.addr}, r, nil, time.Now().Add(time.Minute), 10); !errors.Is(err, context.Canceled) {
		t.Errorf("an exchange after the group's end: %v, want context.Canceled", err)
	}
}

// Idle connections close after IdleTimeout, and the target's pool goes
// with them.
func TestIdleConnectionsClose(t *testing.T) {
	var closed atomic.Bool
	s := startRawShard(t, func(_ int, _ shardRequest, c net.Conn) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		_, err := c.Read(make([]byte, 1)) // until the client closes
		closed.Store(errors.Is(err, io.EOF))
		return false
	})
	c := newClient(t, Config{IdleTimeout: 50 * time.Millisecond})
	if _, err := do(c, Target{Addr: s.addr}, mustRequest(t, "GET", "/", nil, nil), 10, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !waitFor(closed.Load) {
		t.Fatal("the idle connection is still open after 10s")
	}
	if !waitFor(func() bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return len(c.pools) == 0
	}) {
		t.Error("the pool of a target with no connection is still kept")
	}
}

// An exchange on a warm connection allocates only the body it returns:
// the head, the buffers and the parser are the exchange's, pooled.
func TestExchangeAllocations(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector allocates, and sync.Pool drops at random under it")
	}
	body := []byte("{}")
	addr := quietShard(t, len(body))
	c := newClient(t, Config{})
	r := mustRequest(t, "POST", "/cache/evict", http.Header{"Idempotency-Key": {"k"}, "X-Forwarded-For": {"10.0.0.1"}}, body)
	g := c.Group(context.Background(), 1)
	defer g.Close()
	tg := Target{Addr: addr}
	exchange := func() {
		if a, err := g.Do(0, tg, r, nil, time.Now().Add(5*time.Second), 1<<10); err != nil || a.Body != "ok" {
			t.Fatalf("%+v, %v", a, err)
		}
	}
	exchange() // dials
	if n := testing.AllocsPerRun(200, exchange); n > 1 {
		t.Errorf("%.1f allocations per exchange, want at most 1 (the body)", n)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// quietShard is a shard that allocates nothing per request (the process's
// allocations are the client's): it answers 200 "ok" to every request of
// bodyLen bytes, and serves one connection.
func quietShard(t *testing.T, bodyLen int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf, have := make([]byte, 4096), 0
		answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		for {
			if end := bytes.Index(buf[:have], []byte("\r\n\r\n")); end >= 0 && have >= end+4+bodyLen {
				have = copy(buf, buf[end+4+bodyLen:have])
				if _, err := c.Write(answer); err != nil {
					return
				}
				continue
			}
			n, err := c.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
		}
	}()
	return ln.Addr().String()
}
