package proxy

import (
	"fmt"
	"testing"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shard-proxy/shard-proxy/ring"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestRingInfo: shard_proxy_ring_info has one series, for the ring in
// force, so that replicas that disagree show different fingerprints.
func TestRingInfo(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	first := p.Table().Fingerprint
	topo.Replicas, topo.Shards = 2, topo.Shards[:2]
	p.apply(t, topo)
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
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	topo.Shards[1].Ready = false
	p.apply(t, topo)
	topo.Replicas, topo.Shards = 2, topo.Shards[:2]
	p.apply(t, topo)
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
