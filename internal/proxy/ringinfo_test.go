package proxy

import (
	"testing"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shard-proxy/shard-proxy/internal/ring"
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
