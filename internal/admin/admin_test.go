package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type adminUnderTest struct {
	*Server
	url    string
	tables *proxy.Proxy
	reg    *prometheus.Registry
}

func startAdmin(t testing.TB, cfg Config, topo *watch.Topology) *adminUnderTest {
	t.Helper()
	return startAdminRing(t, ring.Config{Algorithm: ring.Modulus}, cfg, topo)
}

// startAdminRing is startAdmin over a ring of rc's algorithm.
func startAdminRing(t testing.TB, rc ring.Config, cfg Config, topo *watch.Topology) *adminUnderTest {
	t.Helper()
	px, err := proxy.New(proxy.Config{Ring: rc, Logger: slog.New(slog.DiscardHandler)})
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

func (a *adminUnderTest) apply(t testing.TB, topo watch.Topology) {
	t.Helper()
	if err := a.tables.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

// call sends a request with its own client and reads the answer.
func call(t *testing.T, method, url string, body []byte, header http.Header) testutil.Answer {
	t.Helper()
	req := testutil.NewRequest(t, method, url, body)
	maps.Copy(req.Header, header)
	return testutil.Do(t, testutil.Client(t), req)
}

func TestHealthAndReadiness(t *testing.T) {
	a := startAdmin(t, Config{}, nil)
	if r := call(t, "GET", a.url+"/healthz", nil, nil); r.Status != 200 {
		t.Errorf("/healthz before topology: %d, want 200", r.Status)
	}
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.Status != 503 {
		t.Errorf("/readyz before topology: %d, want 503", r.Status)
	}
	a.apply(t, testutil.Topology(testutil.StartShards(t, 2, "web")))
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.Status != 200 {
		t.Errorf("/readyz with topology: %d, want 200", r.Status)
	}
	a.Drain()
	if r := call(t, "GET", a.url+"/readyz", nil, nil); r.Status != 503 {
		t.Errorf("/readyz while draining: %d, want 503", r.Status)
	}
	if r := call(t, "GET", a.url+"/healthz", nil, nil); r.Status != 200 {
		t.Errorf("/healthz while draining: %d, want 200", r.Status)
	}
}

func TestShardsAndLocate(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	topo.Shards[2].Ready = false
	a := startAdmin(t, Config{}, &topo)

	got := testutil.Decode[ShardsAnswer](t, call(t, "GET", a.url+"/shards", nil, nil))
	want := ring.Fingerprint(ring.Config{Algorithm: ring.Modulus}, []string{"web-0", "web-1", "web-2"})
	if got.Ring != "modulus" || got.Replicas != 3 || got.Ready != 2 || got.Fingerprint != want || len(got.Shards) != 3 {
		t.Fatalf("/shards = %+v, want modulus, 3 replicas, 2 ready, fingerprint %s", got, want)
	}
	if s := got.Shards[2]; s.Name != "web-2" || s.Ordinal != 2 || s.Ready || s.Address != topo.Shards[2].Addr {
		t.Errorf("/shards entry 2 = %+v", s)
	}

	for key, ordinal := range map[string]int{"42": 0, "43": 1, "-1": 2, "a b&c": -1} {
		r := call(t, "GET", a.url+"/locate?key="+strings.ReplaceAll(strings.ReplaceAll(key, " ", "%20"), "&", "%26"), nil, nil)
		loc := testutil.Decode[LocateAnswer](t, r)
		if loc.Key != key {
			t.Errorf("locate %q answered for key %q", key, loc.Key)
		}
		if ordinal >= 0 && (loc.Ordinal != ordinal || loc.Shard != fmt.Sprintf("web-%d", ordinal) || loc.Address != topo.Shards[ordinal].Addr || loc.Ready != (ordinal != 2)) {
			t.Errorf("locate %q = %+v, want ordinal %d", key, loc, ordinal)
		}
	}
	if r := call(t, "GET", a.url+"/locate", nil, nil); r.Status != 400 {
		t.Errorf("/locate without key: %d, want 400", r.Status)
	}
	if r := call(t, "GET", a.url+"/nope", nil, nil); r.Status != 404 || !json.Valid(r.Body) {
		t.Errorf("unknown endpoint: %d %s, want 404 JSON", r.Status, r.Body)
	}
	if r := call(t, "POST", a.url+"/shards", nil, nil); r.Status != 405 || r.Header.Get("Allow") == "" || !json.Valid(r.Body) {
		t.Errorf("POST /shards: %d %s, want 405 JSON with Allow", r.Status, r.Body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 2, "web"))
	a := startAdmin(t, Config{}, &topo)
	call(t, "POST", a.url+"/broadcast/x", nil, nil)
	r := call(t, "GET", a.url+"/metrics", nil, nil)
	for _, want := range []string{
		`shard_proxy_broadcasts_total{outcome="success"} 1`,
		`shard_proxy_broadcast_shard_results_total{outcome="success",shard="web-1"} 1`,
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
