package table

import (
	"fmt"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func topo(n int) watch.Topology {
	t := watch.Topology{Replicas: n}
	for i := range n {
		t.Shards = append(t.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: fmt.Sprintf("10.0.0.%d:80", i+1), Ready: true})
	}
	return t
}

func TestBuildReusesTheRingForAddressAndReadinessChanges(t *testing.T) {
	cfg := ring.Config{Algorithm: ring.Consistent}
	first, err := Build(cfg, topo(4), nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := topo(4)
	moved.Shards[2].Addr, moved.Shards[3].Ready = "10.0.0.99:80", false
	second, err := Build(cfg, moved, first)
	if err != nil {
		t.Fatal(err)
	}
	if second.Ring != first.Ring || second.Fingerprint != first.Fingerprint {
		t.Error("an address/readiness change rebuilt the ring")
	}
	if second.Shards[2].Addr != "10.0.0.99:80" || second.Shards[3].Ready || second.Ready() != 3 {
		t.Errorf("shards not updated: %+v", second.Shards)
	}
	if first.Shards[2].Addr != "10.0.0.3:80" {
		t.Error("building a new table changed the previous one")
	}
	scaled, err := Build(cfg, topo(5), second)
	if err != nil {
		t.Fatal(err)
	}
	if scaled.Ring == second.Ring || scaled.Fingerprint == second.Fingerprint || scaled.Replicas() != 5 {
		t.Error("scaling did not rebuild the ring")
	}
	other, _ := Build(ring.Config{Algorithm: ring.Jump}, topo(4), first)
	if other.Fingerprint == first.Fingerprint {
		t.Error("a different algorithm kept the fingerprint")
	}
}

func TestBuildSortsByOrdinalAndRejectsBadTopologies(t *testing.T) {
	shuffled := topo(3)
	shuffled.Shards[0], shuffled.Shards[2] = shuffled.Shards[2], shuffled.Shards[0]
	tbl, err := Build(ring.Config{}, shuffled, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range tbl.Shards {
		if s.Ordinal != i {
			t.Errorf("index %d holds ordinal %d", i, s.Ordinal)
		}
	}
	noAddr := topo(2)
	noAddr.Shards[1].Addr = ""
	if tbl, _ := Build(ring.Config{}, noAddr, nil); tbl.Shards[1].Ready {
		t.Error("a shard without an address is ready")
	}
	dup := topo(3)
	dup.Shards[2].Ordinal = 1
	short := topo(3)
	short.Replicas = 4
	for name, bad := range map[string]watch.Topology{"duplicate ordinal": dup, "count != replicas": short} {
		if _, err := Build(ring.Config{}, bad, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	empty, err := Build(ring.Config{}, watch.Topology{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := empty.Owner([]byte("k")); ok {
		t.Error("an empty table has an owner")
	}
}
