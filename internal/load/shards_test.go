package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

// shardServer is a real HTTP server on a loopback socket standing in for
// one shard, with a latency the test controls. It counts the requests per
// key (the last path segment) and the requests in flight.
type shardServer struct {
	name  string
	addr  string
	srv   *http.Server
	delay atomic.Int64 // nanoseconds each answer waits

	// While stall is set, each arriving request waits until it is closed.
	stallMu sync.Mutex
	stall   chan struct{}

	inFlight *atomic.Int64 // shared by the shards of a test
	maxSeen  *atomic.Int64

	mu     sync.Mutex
	total  int
	perKey map[string]int
}

// cluster is the shards of a test behind a real shard-proxy (the proxy
// package, serving on a loopback socket) that routes path /k/{key} and
// names the shard in X-Shard.
type cluster struct {
	shards   []*shardServer
	url      string // http://proxy/k/{key}
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{}
	topo := watch.Topology{Replicas: n}
	for i := range n {
		s := &shardServer{name: fmt.Sprintf("web-%d", i), perKey: map[string]int{}, inFlight: &c.inFlight, maxSeen: &c.maxSeen}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.addr = ln.Addr().String()
		s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.srv.Serve(ln) }()
		t.Cleanup(func() {
			s.endStall()
			_ = s.srv.Close()
		})
		c.shards = append(c.shards, s)
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.name, Addr: s.addr, Ready: true})
	}
	rules, err := keys.ParseRules("path:/k/{key}")
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Config{Keys: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := px.Apply(topo); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- px.Serve(ln) }()
	t.Cleanup(func() {
		for _, s := range c.shards {
			s.endStall()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := px.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		if err := <-served; err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("proxy serve: %v", err)
		}
		px.Close()
	})
	c.url = "http://" + ln.Addr().String() + "/k/{key}"
	return c
}

func (s *shardServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxSeen.Load()
		if n <= m || s.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	_, _ = io.Copy(io.Discard, r.Body)
	s.stallMu.Lock()
	stall := s.stall
	s.stallMu.Unlock()
	if stall != nil {
		<-stall
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d) // the shard's latency, which the test sets
	}
	key := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	s.mu.Lock()
	s.total++
	s.perKey[key]++
	s.mu.Unlock()
	w.Header().Set("Content-Length", "2")
	_, _ = io.WriteString(w, "ok")
}

// stallFor holds every request arriving in the next d until d has passed.
func (s *shardServer) stallFor(d time.Duration) {
	ch := make(chan struct{})
	s.stallMu.Lock()
	s.stall = ch
	s.stallMu.Unlock()
	time.AfterFunc(d, s.endStall)
}

func (s *shardServer) endStall() {
	s.stallMu.Lock()
	defer s.stallMu.Unlock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
}

func (s *shardServer) count() (int, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.perKey))
	for k, v := range s.perKey {
		m[k] = v
	}
	return s.total, m
}

// row returns the report's row of shard name.
func row(t *testing.T, rep *Report, name string) Row {
	t.Helper()
	for _, r := range rep.Shards {
		if r.Shard == name {
			return r
		}
	}
	t.Fatalf("the report has no row for %s: %+v", name, rep.Shards)
	return Row{}
}

// runAgainst runs cfg against the cluster's URL over HTTP/1.1 (or h2c).
func runAgainst(t *testing.T, c *cluster, cfg Config, h2 bool) *Report {
	t.Helper()
	target, err := NewTarget(c.url, "GET", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sender, _, err = NewSender(target, SenderOptions{HTTP2: h2, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func keysOf(t *testing.T, spec string) KeySource {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("keys %s, seed %d", spec, seed)
	ks, err := ParseKeys(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// checkAtShards: every request of the report reached a shard, and each
// shard's row counts what that shard counted, all answered 200.
func checkAtShards(t *testing.T, c *cluster, rep *Report) {
	t.Helper()
	sum := 0
	for _, s := range c.shards {
		n, _ := s.count()
		sum += n
		r := row(t, rep, s.name)
		if r.Requests != int64(n) || r.Status["200"] != int64(n) {
			t.Errorf("%s: report row has %d requests (%v); the shard counted %d", s.name, r.Requests, r.Status, n)
		}
	}
	if rep.All.Requests != int64(sum) || len(rep.Shards) != len(c.shards) {
		t.Errorf("report: %d requests in %d rows; the shards counted %d in all, %d shards", rep.All.Requests, len(rep.Shards), sum, len(c.shards))
	}
}
