package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/ring"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// received is one request a test shard got.
type received struct {
	method, uri string
	header      http.Header
	body        []byte
}

// shard is a real HTTP server on loopback that records what it receives.
type shard struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	// answer, if set, replaces the default 200 {"shard":name}.
	answer func(w http.ResponseWriter, r *http.Request)
}

// setAnswer replaces the shard's handler; handlers of earlier requests may
// still be running, so it takes the lock.
func (s *shard) setAnswer(h func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = h
}

func (s *shard) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func startShards(t *testing.T, n int) []*shard {
	t.Helper()
	out := make([]*shard, n)
	for i := range out {
		s := &shard{name: fmt.Sprintf("web-%d", i)}
		s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.got = append(s.got, received{r.Method, r.RequestURI, r.Header.Clone(), body})
			answer := s.answer
			s.mu.Unlock()
			if answer != nil {
				answer(w, r)
				return
			}
			fmt.Fprintf(w, `{"shard":%q}`, s.name)
		}))
		t.Cleanup(s.srv.Close)
		out[i] = s
	}
	return out
}

func topologyOf(shards []*shard) watch.Topology {
	topo := watch.Topology{Replicas: len(shards)}
	for i, s := range shards {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.name, Addr: s.srv.Listener.Addr().String(), Ready: true})
	}
	return topo
}

type adminUnderTest struct {
	*Server
	url    string
	tables *proxy.Proxy
	reg    *prometheus.Registry
}

func startAdmin(t *testing.T, cfg Config, topo *watch.Topology) *adminUnderTest {
	t.Helper()
	px, err := proxy.New(proxy.Config{Ring: ring.Config{Algorithm: ring.Modulus}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	a := &adminUnderTest{tables: px, reg: prometheus.NewRegistry()}
	cfg.Tables, cfg.Gatherer, cfg.Registerer = a.tables, a.reg, a.reg
	if topo != nil {
		a.apply(t, *topo)
	}
	a.Server = New(cfg)
	srv := httptest.NewServer(a.Server)
	t.Cleanup(func() {
		srv.Close()
		a.Server.Close()
	})
	a.url = srv.URL
	return a
}

func (a *adminUnderTest) apply(t *testing.T, topo watch.Topology) {
	t.Helper()
	if err := a.tables.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, url string, body []byte, header http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func TestHealthAndReadiness(t *testing.T) {
	a := startAdmin(t, Config{}, nil)
	if r := call(t, "GET", a.url+"/healthz", nil, nil); r.status != 200 {
		t.Errorf("/healthz before topology: %d, want 200", r.status)
	}
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.status != 503 {
		t.Errorf("/readyz before topology: %d, want 503", r.status)
	}
	a.apply(t, topologyOf(startShards(t, 2)))
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.status != 200 {
		t.Errorf("/readyz with topology: %d, want 200", r.status)
	}
	a.Drain()
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.status != 503 {
		t.Errorf("/readyz while draining: %d, want 503", r.status)
	}
	if r := call(t, "GET", a.url+"/healthz", nil, nil); r.status != 200 {
		t.Errorf("/healthz while draining: %d, want 200", r.status)
	}
}

func TestShardsAndLocate(t *testing.T) {
	shards := startShards(t, 3)
	topo := topologyOf(shards)
	topo.Shards[2].Ready = false
	a := startAdmin(t, Config{}, &topo)

	got := decode[ShardsAnswer](t, call(t, "GET", a.url+"/shards", nil, nil))
	want := ring.Fingerprint(ring.Config{Algorithm: ring.Modulus}, []string{"web-0", "web-1", "web-2"})
	if got.Ring != "modulus" || got.Replicas != 3 || got.Ready != 2 || got.Fingerprint != want || len(got.Shards) != 3 {
		t.Fatalf("/shards = %+v, want modulus, 3 replicas, 2 ready, fingerprint %s", got, want)
	}
	if s := got.Shards[2]; s.Name != "web-2" || s.Ordinal != 2 || s.Ready || s.Address != topo.Shards[2].Addr {
		t.Errorf("/shards entry 2 = %+v", s)
	}

	for key, ordinal := range map[string]int{"42": 0, "43": 1, "-1": 2, "a b&c": -1} {
		r := call(t, "GET", a.url+"/locate?key="+strings.ReplaceAll(strings.ReplaceAll(key, " ", "%20"), "&", "%26"), nil, nil)
		loc := decode[LocateAnswer](t, r)
		if loc.Key != key {
			t.Errorf("locate %q answered for key %q", key, loc.Key)
		}
		if ordinal >= 0 && (loc.Ordinal != ordinal || loc.Shard != fmt.Sprintf("web-%d", ordinal) || loc.Address != topo.Shards[ordinal].Addr || loc.Ready != (ordinal != 2)) {
			t.Errorf("locate %q = %+v, want ordinal %d", key, loc, ordinal)
		}
	}
	if r := call(t, "GET", a.url+"/locate", nil, nil); r.status != 400 {
		t.Errorf("/locate without key: %d, want 400", r.status)
	}
	if r := call(t, "GET", a.url+"/nope", nil, nil); r.status != 404 || !json.Valid(r.body) {
		t.Errorf("unknown endpoint: %d %s, want 404 JSON", r.status, r.body)
	}
	if r := call(t, "POST", a.url+"/shards", nil, nil); r.status != 405 || r.header.Get("Allow") == "" || !json.Valid(r.body) {
		t.Errorf("POST /shards: %d %s, want 405 JSON with Allow", r.status, r.body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	topo := topologyOf(startShards(t, 2))
	a := startAdmin(t, Config{}, &topo)
	call(t, "POST", a.url+"/broadcast/x", nil, nil)
	r := call(t, "GET", a.url+"/metrics", nil, nil)
	for _, want := range []string{
		`shard_proxy_broadcasts_total{outcome="success"} 1`,
		`shard_proxy_broadcast_shard_results_total{outcome="success",shard="web-1"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
