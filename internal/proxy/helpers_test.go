package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/ring"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, fasthttpSleepers...)
}

// fasthttpSleepers are fasthttp goroutines that notice a stopped server or
// a client without connections only after their current sleep (a server's
// worker-pool cleaner, a client's idle-connection cleaner), then exit on
// their own; and the process-wide Date updater that fasthttp starts once.
// Everything else must be gone when the tests end.
var fasthttpSleepers = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// seen is what a test shard received.
type seen struct {
	Method string
	URI    string
	Header http.Header
	Body   []byte
	Host   string
}

// testShard is a real HTTP server on a loopback socket that answers with its
// own name and records what it received.
type testShard struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	got  []seen
	// handle, if set, answers instead of the default.
	handle func(w http.ResponseWriter, r *http.Request)
}

func (s *testShard) addr() string { return s.srv.Listener.Addr().String() }

func (s *testShard) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.got...)
}

func startShards(t *testing.T, n int, prefix string) []*testShard {
	t.Helper()
	shards := make([]*testShard, n)
	for i := range shards {
		s := &testShard{name: fmt.Sprintf("%s-%d", prefix, i)}
		s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.got = append(s.got, seen{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: body, Host: r.Host})
			h := s.handle
			s.mu.Unlock()
			if h != nil {
				h(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"shard":%q}`, s.name)
		}))
		t.Cleanup(s.srv.Close)
		shards[i] = s
	}
	return shards
}

func topologyOf(shards []*testShard) watch.Topology {
	topo := watch.Topology{Replicas: len(shards)}
	for i, s := range shards {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.name, Addr: s.addr(), Ready: true})
	}
	return topo
}

// running is a Proxy serving on a real loopback listener.
type running struct {
	*Proxy
	url string
	reg *prometheus.Registry
}

// startProxy serves a Proxy for cfg on 127.0.0.1 and applies topo with
// ringCfg (no topology when topo is nil).
func startProxy(t *testing.T, cfg Config, ringCfg ring.Config, topo *watch.Topology) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Ring = ringCfg
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Proxy: p, reg: reg}
	if topo != nil {
		r.apply(t, *topo)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Server()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		p.Close()
	})
	r.url = "http://" + ln.Addr().String()
	return r
}

func (r *running) apply(t *testing.T, topo watch.Topology) {
	t.Helper()
	if err := r.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

// client is a plain net/http client with its own pool, closed at cleanup.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", a.body, err)
	}
	return m
}

func do(t *testing.T, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

func newRequest(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func mustRules(t testing.TB, spec string) []Rule {
	t.Helper()
	rules, err := ParseRules(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func names(shards []*testShard) []string {
	out := make([]string, len(shards))
	for i, s := range shards {
		out[i] = s.name
	}
	return out
}

func jsonString(v string) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
