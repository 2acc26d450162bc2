package table

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// named is a topology of shards with the given ordinals and names.
func named(ordinals []int, names ...string) watch.Topology {
	t := watch.Topology{Replicas: len(names)}
	for i, n := range names {
		t.Shards = append(t.Shards, watch.Shard{Ordinal: ordinals[i], Name: n, Addr: "10.0.0.1:80", Ready: true})
	}
	return t
}

func TestPlanNamesNewShardsLikeTheOldOnes(t *testing.T) {
	tests := []struct {
		name         string
		topo         watch.Topology
		m            int
		wantNames    []string
		wantOrdinals []int
	}{
		{name: "grow", topo: topo(3), m: 5,
			wantNames: []string{"web-0", "web-1", "web-2", "web-3", "web-4"}, wantOrdinals: []int{0, 1, 2, 3, 4}},
		{name: "shrink keeps the lowest ordinals", topo: topo(4), m: 2,
			wantNames: []string{"web-0", "web-1"}, wantOrdinals: []int{0, 1}},
		{name: "same size", topo: topo(3), m: 3,
			wantNames: []string{"web-0", "web-1", "web-2"}, wantOrdinals: []int{0, 1, 2}},
		{name: "ordinals from spec.ordinals.start", topo: named([]int{5, 6, 7}, "web-5", "web-6", "web-7"), m: 4,
			wantNames: []string{"web-5", "web-6", "web-7", "web-8"}, wantOrdinals: []int{5, 6, 7, 8}},
		{name: "a prefix is not a shared digit", topo: named([]int{10, 11}, "db-10", "db-11"), m: 3,
			wantNames: []string{"db-10", "db-11", "db-12"}, wantOrdinals: []int{10, 11, 12}},
		{name: "one shard", topo: named([]int{0}, "cache-0"), m: 2,
			wantNames: []string{"cache-0", "cache-1"}, wantOrdinals: []int{0, 1}},
		{name: "names without ordinals fall back to their common prefix", topo: named([]int{0, 1}, "east-a", "east-b"), m: 3,
			wantNames: []string{"east-a", "east-b", "east-2"}, wantOrdinals: []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, err := Build(ring.Config{Algorithm: ring.Consistent}, tt.topo, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := tbl.Plan(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Names, tt.wantNames) || !slices.Equal(p.Ordinals, tt.wantOrdinals) {
				t.Errorf("planned %v %v, want %v %v", p.Names, p.Ordinals, tt.wantNames, tt.wantOrdinals)
			}
			if p.Ring.Len() != tt.m {
				t.Errorf("planned ring has %d shards, want %d", p.Ring.Len(), tt.m)
			}
		})
	}
}

func TestPlanOwnerIsTheRingOverThePlannedNames(t *testing.T) {
	for _, alg := range ring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			cfg := ring.Config{Algorithm: alg}
			tbl, err := Build(cfg, named([]int{2, 3, 4}, "web-2", "web-3", "web-4"), nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := tbl.Plan(5)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := ring.New(cfg, []string{"web-2", "web-3", "web-4", "web-5", "web-6"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2000 {
				key := []byte("key-" + strconv.Itoa(i))
				ordinal, name := p.Owner(key)
				want := direct.Owner(key)
				if ordinal != want+2 || name != fmt.Sprintf("web-%d", want+2) {
					t.Fatalf("planned owner of %s = %d %s, want %d web-%d", key, ordinal, name, want+2, want+2)
				}
			}
		})
	}
}

func TestPlanForAndErrors(t *testing.T) {
	cfg := ring.Config{Algorithm: ring.Jump}
	first, _ := Build(cfg, topo(3), nil)
	p, err := first.Plan(4)
	if err != nil {
		t.Fatal(err)
	}
	notReady := topo(3)
	notReady.Shards[1].Ready = false
	sameRing, _ := Build(cfg, notReady, first)
	scaled, _ := Build(cfg, topo(4), first)
	tests := []struct {
		name string
		t    *Table
		m    int
		want bool
	}{
		{name: "same table and M", t: first, m: 4, want: true},
		{name: "a readiness change keeps the ring", t: sameRing, m: 4, want: true},
		{name: "another M", t: first, m: 5, want: false},
		{name: "another ring", t: scaled, m: 4, want: false},
		{name: "no table", t: nil, m: 4, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.For(tt.t, tt.m); got != tt.want {
				t.Errorf("For = %t, want %t", got, tt.want)
			}
		})
	}
	if _, err := first.Plan(0); err == nil {
		t.Error("Plan(0) succeeded, want an error")
	}
	empty, _ := Build(cfg, watch.Topology{}, nil)
	if _, err := empty.Plan(3); err == nil {
		t.Error("Plan on an empty table succeeded, want an error")
	}
	if d := p.Diff(); d.Exact || len(d.Moves) != 3 || d.Moves[0].To != 3 {
		t.Errorf("Diff of jump 3 -> 4 = %+v, want three sampled moves to index 3", d)
	}
}
