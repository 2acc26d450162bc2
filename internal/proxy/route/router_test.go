package route

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// TestRingInfo: shard_proxy_ring_info has one series, for the ring in
// force, so that replicas that disagree show different fingerprints.
func TestRingInfo(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	p := newRouter(t, Config{}, topo)
	first := p.Table().Fingerprint
	topo.Replicas, topo.Shards = 2, topo.Shards[:2]
	apply(t, p, topo)
	second := p.Table().Fingerprint
	if first == second {
		t.Fatal("the fingerprint did not change with N")
	}
	if n := promtest.CollectAndCount(p.metrics.ringInfo); n != 1 {
		t.Errorf("%d ring_info series, want 1", n)
	}
	if v := promtest.ToFloat64(p.metrics.ringInfo.WithLabelValues("jump", second)); v != 1 {
		t.Errorf("ring_info for the ring in force = %v, want 1", v)
	}
}

// TestTopologyChanges: each applied topology is remembered, newest first,
// with what changed shard by shard.
func TestTopologyChanges(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	p := newRouter(t, Config{}, topo)
	topo.Shards[1].Ready = false
	apply(t, p, topo)
	topo.Replicas, topo.Shards = 2, topo.Shards[:2]
	apply(t, p, topo)
	got := p.TopologyChanges()
	if len(got) != 3 {
		t.Fatalf("%d changes, want 3: %+v", len(got), got)
	}
	want := [][]string{{"N 3 → 2", "web-2 left"}, {"web-1: ready → not ready"}, {"first topology: 3 shards"}}
	for i, w := range want {
		if fmt.Sprint(got[i].Changes) != fmt.Sprint(w) {
			t.Errorf("change %d: %q, want %q", i, got[i].Changes, w)
		}
	}
	if !got[0].RingRebuilt || got[1].RingRebuilt || got[0].Replicas != 2 || got[1].Ready != 2 {
		t.Errorf("changes %+v", got)
	}
}

// newRouter is a Router for cfg with topo applied and a registry of its own.
func newRouter(t testing.TB, cfg Config, topo watch.Topology) *Router {
	t.Helper()
	cfg.Registerer = prometheus.NewRegistry()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	apply(t, r, topo)
	return r
}

func apply(t testing.TB, r *Router, topo watch.Topology) {
	t.Helper()
	if err := r.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}
