package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Request is one request as a test shard received it.
type Request struct {
	Method string
	URI    string // the request target exactly as sent
	Host   string
	Header http.Header
	// Body is the request body, its first BodyLimit bytes. A handler given
	// to Handle reads the body itself; what it left unread is drained after
	// it returns, and Body is complete from then on.
	Body []byte
}

// BodyLimit is how much of each request body a Shard records; handlers
// still read all of it.
const BodyLimit = 64 << 10

// Shard is a real HTTP server on a loopback socket standing in for one
// shard. It records every request, then answers 200 with the JSON
// {"shard":"<name>"}, or with the handler given to Handle, which reads the
// body as it arrives (an upload streams through the shard; only its first
// BodyLimit bytes are kept). Safe for concurrent use.
type Shard struct {
	Name string
	Addr string // host:port
	URL  string // http://host:port

	srv     *httptest.Server
	arrived chan Request
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	got     []Request
	handler http.HandlerFunc
	hold    bool
}

// StartShards starts n shards named prefix-0, prefix-1, … and stops them
// when the test ends, after releasing any request they hold.
func StartShards(t testing.TB, n int, prefix string) []*Shard {
	t.Helper()
	shards := make([]*Shard, n)
	for i := range shards {
		s := &Shard{
			Name:    fmt.Sprintf("%s-%d", prefix, i),
			arrived: make(chan Request, 16),
			release: make(chan struct{}),
		}
		// HTTP/1.1, and HTTP/2 with prior knowledge for tests that make
		// the shard an h2c one.
		s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		s.srv.Config.Protocols = &protos
		s.srv.Start()
		s.Addr, s.URL = s.srv.Listener.Addr().String(), s.srv.URL
		t.Cleanup(func() {
			s.Release()
			s.srv.Close()
		})
		shards[i] = s
	}
	return shards
}

func (s *Shard) serve(w http.ResponseWriter, r *http.Request) {
	body := &bodyPrefix{max: BodyLimit}
	r.Body = teeBody{io.TeeReader(r.Body, body), r.Body}
	s.mu.Lock()
	h, hold := s.handler, s.hold
	s.mu.Unlock()
	if h == nil {
		// The whole body before the answer: the record is complete by the
		// time the client has its answer.
		_, _ = io.Copy(io.Discard, r.Body)
	}
	i, req := s.record(r, body.buf)
	if h != nil {
		defer s.finish(i, r.Body, body)
	}
	if hold {
		select {
		case s.arrived <- req:
		default:
		}
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
	}
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"shard":%q}`, s.Name)
}

// record appends r, with the body read so far, and returns its index.
func (s *Shard) record(r *http.Request, body []byte) (int, Request) {
	req := Request{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: slices.Clone(body)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, req)
	return len(s.got) - 1, req
}

// finish drains what a handler left of the body, up to BodyLimit, and
// completes record i with it.
func (s *Shard) finish(i int, rd io.Reader, body *bodyPrefix) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rd, BodyLimit))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[i].Body = slices.Clone(body.buf)
}

// bodyPrefix keeps the first max bytes written to it and drops the rest.
type bodyPrefix struct {
	buf []byte
	max int
}

func (p *bodyPrefix) Write(b []byte) (int, error) {
	if room := p.max - len(p.buf); room > 0 {
		p.buf = append(p.buf, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

// teeBody is a request body whose reads also go to a bodyPrefix.
type teeBody struct {
	io.Reader
	io.Closer
}

// Handle makes h answer the requests that arrive from now on; nil restores
// the default answer. Handlers of earlier requests may still be running.
func (s *Shard) Handle(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

// Hold makes the shard hold every request that arrives from now on, after
// recording it and sending it on Arrived, until Release, the client going
// away, or the end of the test; a held request then gets its answer.
func (s *Shard) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = true
}

// Release lets every held request go on, and every later one pass without
// being held.
func (s *Shard) Release() { s.once.Do(func() { close(s.release) }) }

// Arrived receives the requests the shard holds, as they arrive (the first
// 16 not yet received; later ones are not sent).
func (s *Shard) Arrived() <-chan Request { return s.arrived }

// Requests returns every request received so far, in order.
func (s *Shard) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.got...)
}

// Topology is the ready Topology of shards, ordinal i at shards[i].
func Topology(shards []*Shard) watch.Topology {
	topo := watch.Topology{Replicas: len(shards)}
	for i, s := range shards {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.Name, Addr: s.Addr, Ready: true})
	}
	return topo
}

// DeadAddr returns a loopback host:port where nothing listens: it was free
// a moment ago, and the kernel hands out ephemeral ports in turn, so no
// other test is likely to take it soon.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
