package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	Body   []byte
}

// Shard is a real HTTP server on a loopback socket standing in for one
// shard. It records every request, then answers 200 with the JSON
// {"shard":"<name>"}, or with the handler given to Handle. Safe for
// concurrent use.
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
		s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
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
	body, _ := io.ReadAll(r.Body)
	req := Request{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	s.got = append(s.got, req)
	h, hold := s.handler, s.hold
	s.mu.Unlock()
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
