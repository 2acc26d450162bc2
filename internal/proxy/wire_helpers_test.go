package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// The wire tests talk to the proxy with hand-written bytes and read what
// comes back byte for byte: Go's client and server would normalize away
// exactly what these tests look at (header case and order, 1xx answers,
// trailers, framing). The reader below is deliberately independent of
// package h1, so that the engine is not checked with its own parser.

// wireTimeout bounds every read and write of a wire test; nothing in them
// should come near it.
const wireTimeout = 10 * time.Second

// rawMsg is one HTTP/1.x message as it crossed the wire.
type rawMsg struct {
	Head    string      // start line and field lines, up to and including the empty line
	Start   string      // start line without its CRLF
	Fields  [][2]string // name and value of each field line, in order, as written
	Body    []byte      // the body as received: chunk framing and trailers included
	Payload []byte      // the body without chunk framing
	Trailer string      // the trailer section of a chunked body (field lines, then CRLF)
}

// Raw is the whole message as it was received.
func (m rawMsg) Raw() string { return m.Head + string(m.Body) }

// Values returns the values of every field named name, in order, matching
// the name case-insensitively.
func (m rawMsg) Values(name string) []string {
	var out []string
	for _, f := range m.Fields {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

// Get returns the first value of name, "" when absent.
func (m rawMsg) Get(name string) string {
	if v := m.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Has reports whether a field named name is present.
func (m rawMsg) Has(name string) bool { return len(m.Values(name)) > 0 }

// Status is the status code of a response.
func (m rawMsg) Status() int {
	parts := strings.SplitN(m.Start, " ", 3)
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// Target is the request-target of a request.
func (m rawMsg) Target() string {
	parts := strings.SplitN(m.Start, " ", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// connTokens reports whether a Connection field lists tok.
func (m rawMsg) connTokens(tok string) bool {
	for _, v := range m.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// readRawHead reads a head: lines ending in CRLF up to an empty line.
func readRawHead(br *bufio.Reader) (rawMsg, error) {
	var m rawMsg
	var head strings.Builder
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			if head.Len() == 0 {
				return m, err // nothing at all: the peer closed
			}
			return m, fmt.Errorf("head cut short after %q: %w", head.String(), err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			return m, fmt.Errorf("line %q does not end in CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		switch {
		case first:
			m.Start = line
		case line == "":
			m.Head = head.String()
			return m, nil
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return m, fmt.Errorf("field line %q has no colon", line)
			}
			m.Fields = append(m.Fields, [2]string{name, strings.Trim(value, " \t")})
		}
	}
}

// readRawChunked reads a chunked body into m: Body as received, Payload
// decoded, Trailer the trailer section.
func readRawChunked(br *bufio.Reader, m *rawMsg) error {
	var raw, payload bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			m.Body, m.Payload = raw.Bytes(), payload.Bytes()
			return fmt.Errorf("chunk size line: %w", err)
		}
		sizeText, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("chunk size line %q", line)
		}
		if size == 0 {
			var trailer strings.Builder
			for {
				tl, err := br.ReadString('\n')
				raw.WriteString(tl)
				trailer.WriteString(tl)
				if err != nil {
					return fmt.Errorf("trailer: %w", err)
				}
				if tl == "\r\n" {
					m.Body, m.Payload, m.Trailer = raw.Bytes(), payload.Bytes(), trailer.String()
					return nil
				}
			}
		}
		n, err := io.CopyN(io.MultiWriter(&raw, &payload), br, size)
		if err != nil || n != size {
			m.Body, m.Payload = raw.Bytes(), payload.Bytes()
			return fmt.Errorf("chunk data: %w", err)
		}
		crlf := make([]byte, 2)
		if _, err := io.ReadFull(br, crlf); err != nil || string(crlf) != "\r\n" {
			return fmt.Errorf("chunk data not followed by CRLF (%q, %v)", crlf, err)
		}
		raw.Write(crlf)
	}
}

// readRawBody reads the body that m's head declares; none when noBody.
// A body without framing runs until EOF.
func readRawBody(br *bufio.Reader, m *rawMsg, noBody bool) error {
	switch {
	case noBody:
		return nil
	case m.Has("Transfer-Encoding"):
		return readRawChunked(br, m)
	case m.Has("Content-Length"):
		n, err := strconv.ParseInt(m.Get("Content-Length"), 10, 64)
		if err != nil {
			return fmt.Errorf("Content-Length %q", m.Get("Content-Length"))
		}
		var b bytes.Buffer
		_, err = io.CopyN(&b, br, n)
		m.Body, m.Payload = b.Bytes(), b.Bytes()
		if err != nil {
			return fmt.Errorf("body cut short after %d of %d bytes: %w", b.Len(), n, err)
		}
		return nil
	}
	b, err := io.ReadAll(br)
	m.Body, m.Payload = b, b
	return err
}

// readRawRequest reads one request as a shard receives it.
func readRawRequest(br *bufio.Reader) (rawMsg, error) {
	m, err := readRawHead(br)
	if err != nil {
		return m, err
	}
	noBody := !m.Has("Transfer-Encoding") && !m.Has("Content-Length")
	return m, readRawBody(br, &m, noBody)
}

// readRawResponse reads one response (a 1xx included) to a request with
// method.
func readRawResponse(br *bufio.Reader, method string) (rawMsg, error) {
	m, err := readRawHead(br)
	if err != nil {
		return m, err
	}
	s := m.Status()
	noBody := method == "HEAD" || s < 200 || s == 204 || s == 304
	return m, readRawBody(br, &m, noBody)
}

// rawClient is a client connection that writes bytes and reads answers.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// proxyAddr is the host:port the proxy listens on.
func (r *running) rawAddr() string { return strings.TrimPrefix(r.url, "http://") }

func dialRaw(t testing.TB, p *running) *rawClient {
	t.Helper()
	var c net.Conn
	var err error
	if p.tls != nil { // the suite over TLS (see TestRawSuiteOverTLS)
		c, err = tls.Dial("tcp", p.tls.addr, p.tls.client("http/1.1"))
		rawTLSDials.Add(1)
	} else {
		c, err = net.Dial("tcp", p.rawAddr())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wireTimeout))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("writing %q: %v", s, err)
	}
}

// response reads the next answer (a 1xx included), failing the test when
// there is none.
func (rc *rawClient) response(method string) rawMsg {
	rc.t.Helper()
	m, err := readRawResponse(rc.br, method)
	if err != nil {
		rc.t.Fatalf("reading an answer: %v (got %q)", err, m.Raw())
	}
	return m
}

// final reads answers until a final one, returning the 1xx answers before it.
func (rc *rawClient) final(method string) (rawMsg, []rawMsg) {
	rc.t.Helper()
	var interim []rawMsg
	for {
		m := rc.response(method)
		if s := m.Status(); s >= 200 || s == 101 {
			return m, interim
		}
		interim = append(interim, m)
	}
}

// closed checks that the proxy closes the connection with nothing more
// to say (EOF or reset), within the deadline.
func (rc *rawClient) closed() {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(wireTimeout))
	b, err := io.ReadAll(rc.br)
	if len(b) > 0 {
		rc.t.Errorf("after the answer the connection carried %q, want it closed", b)
	}
	if err != nil && !isEOF(err) {
		rc.t.Errorf("waiting for the close: %v, want EOF", err)
	}
}

// roundTrip sends req and reads its final answer.
func (rc *rawClient) roundTrip(req, method string) rawMsg {
	rc.t.Helper()
	rc.send(req)
	m, _ := rc.final(method)
	return m
}

// rawShard is a shard that speaks hand-written bytes: serve is called on
// its own goroutine for every connection accepted, with a reader on it.
// Connections and goroutines end with the test.
type rawShard struct {
	addr     string
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int
}

func startRawShard(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) *rawShard {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawShard{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.accepted++
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// connections is how many connections the shard accepted so far.
func (s *rawShard) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// eachRequest serves every request on a connection with answer, which
// returns the bytes to write; the connection closes after an answer when
// answer says so.
func eachRequest(answer func(req rawMsg) (resp string, closeAfter bool)) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			resp, closeAfter := answer(req)
			if _, err := io.WriteString(c, resp); err != nil || closeAfter {
				return
			}
		}
	}
}

// startHTTPShard serves h with Go's own server on loopback until the test
// ends, and returns its address. Unlike testutil.Shard, h runs as soon as
// the head arrived, before the body is read.
func startHTTPShard(t testing.TB, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawTopology is a ready topology of the given addresses, named raw-0, ….
func rawTopology(addrs ...string) *watch.Topology {
	topo := &watch.Topology{Replicas: len(addrs)}
	for i, a := range addrs {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("raw-%d", i), Addr: a, Ready: true})
	}
	return topo
}

// okResponse is a minimal well-framed answer with body.
func okResponse(body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// gate is a channel a test opens once; a raw shard waiting on it is let go
// at the end of the test at the latest, so its goroutine can end.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

// openAtEnd opens g when the test ends. Called after the shard that waits
// on g started, its cleanup runs before the shard's, which waits for the
// shard's goroutines.
func (g *gate) openAtEnd(t testing.TB) { t.Cleanup(g.open) }

func (g *gate) open()                 { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() <-chan struct{} { return g.ch }

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tunnelsOpen reads shard_proxy_tunnels_open for a shard.
func (r *running) tunnelsOpen(shard string) float64 {
	return r.metric("shard_proxy_tunnels_open", "shard", shard)
}

// idleUpstreams counts the pooled idle connections to the shard at ring
// index i.
func (r *running) idleUpstreams(i int) int {
	return r.router.Snapshot().Backends[i].PoolStats(route.PoolHTTP1).Idle
}

// upstreamsAllIdle reports whether every connection to the shard at ring
// index i is back in the pool (and there is one).
func (r *running) upstreamsAllIdle(i int) bool {
	st := r.router.Snapshot().Backends[i].PoolStats(route.PoolHTTP1)
	return st.Idle > 0 && st.Idle == st.Open
}

// memStats returns the memory statistics after a full collection.
func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// heapPeak samples HeapInuse until stop is closed and returns the highest
// value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// errIsClosed tells a read that failed because the peer closed or reset.
func errIsClosed(err error) bool {
	return isEOF(err) || errors.Is(err, net.ErrClosed)
}

// recv receives from ch, failing the test when nothing comes within
// wireTimeout.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wireTimeout):
		t.Fatalf("nothing on %T within %v", ch, wireTimeout)
		panic("unreachable")
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// forwardedProto is the X-Forwarded-Proto a shard gets from p's raw
// clients: https when they speak TLS (rawOverTLS).
func forwardedProto(p *running) string {
	if p.tls != nil {
		return "https"
	}
	return "http"
}
