// Package table joins a ring with the shards' addresses and readiness into
// one immutable routing Table. The data plane (proxy.Proxy.Apply) is the
// one owner that builds Tables from Topologies and publishes them.
package table

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Table is one immutable routing snapshot: the ring over the shard names and
// the shards by ring index. It is safe for concurrent use; a request loads
// one Table and uses it throughout, so it never sees two topologies.
type Table struct {
	// Config is the ring configuration the table was built with, with its
	// defaults resolved (ring.Config.Normalized).
	Config ring.Config
	// Ring maps keys to indexes of Shards.
	Ring ring.Ring
	// Shards holds one entry per ordinal, sorted by ordinal; index i is ring
	// index i for the first Replicas() shards. Those after them (pods above
	// a pinned N) own no keys but are shards for broadcast.
	Shards []watch.Shard
	// Handoff, when data moves from a previous N (HandoffFrom), is the ring
	// of that N: a key whose owner under it differs was handed off.
	Handoff *Planned
	// Fingerprint digests the ring inputs (algorithm, partitions, names), so
	// operators can check that proxy replicas route identically.
	Fingerprint string

	names []string
}

// Replicas is N, the number of shards in the ring.
func (t *Table) Replicas() int { return len(t.names) }

// OwnsKeys tells whether the shard at index i is in the ring.
func (t *Table) OwnsKeys(i int) bool { return i < len(t.names) }

// ShardByOrdinal returns the shard with the given ordinal, if any.
func (t *Table) ShardByOrdinal(ordinal int) (*watch.Shard, bool) {
	i, ok := slices.BinarySearchFunc(t.Shards, ordinal, func(s watch.Shard, o int) int { return s.Ordinal - o })
	if !ok {
		return nil, false
	}
	return &t.Shards[i], true
}

// Previous returns the shard that owned key under the handoff ring, when
// that differs from owner (the key moved and its data may still be there).
func (t *Table) Previous(key []byte, owner *watch.Shard) (name, addr string, moved bool) {
	if t.Handoff == nil {
		return "", "", false
	}
	ordinal, name := t.Handoff.Owner(key)
	if name == owner.Name {
		return "", "", false
	}
	if s, ok := t.ShardByOrdinal(ordinal); ok {
		addr = s.Addr
	}
	return name, addr, true
}

// Owner returns the shard owning key and its ring index, or ok=false when the
// ring is empty. It does not allocate.
func (t *Table) Owner(key []byte) (shard *watch.Shard, index int, ok bool) {
	i := t.Ring.Owner(key)
	if i < 0 || i >= len(t.Shards) {
		return nil, -1, false
	}
	return &t.Shards[i], i, true
}

// Ready counts the shards that are ready.
func (t *Table) Ready() int {
	n := 0
	for _, s := range t.Shards {
		if s.Ready {
			n++
		}
	}
	return n
}

// Build makes a Table from topo. The ring is rebuilt only when the
// configuration or the shard names differ from prev; a readiness or address
// change reuses prev's ring, which keeps such updates cheap.
func Build(cfg ring.Config, topo watch.Topology, prev *Table) (*Table, error) {
	cfg = cfg.Normalized()
	topo, err := topo.Normalize()
	if err != nil {
		return nil, err
	}
	names := make([]string, topo.Replicas)
	for i := range names {
		names[i] = topo.Shards[i].Name
	}
	t := &Table{Config: cfg, Shards: topo.Shards, names: names}
	if prev != nil && prev.Config == cfg && slices.Equal(prev.names, names) {
		t.Ring, t.Fingerprint = prev.Ring, prev.Fingerprint
	} else {
		r, err := ring.New(cfg, names)
		if err != nil {
			return nil, fmt.Errorf("building %s ring for %d shards: %w", cfg.Algorithm, len(names), err)
		}
		t.Ring, t.Fingerprint = r, ring.Fingerprint(cfg, names)
	}
	if err := t.buildHandoff(topo.HandoffFrom, prev); err != nil {
		return nil, err
	}
	return t, nil
}

// buildHandoff sets the ring of the previous N, reusing prev's when it is
// the same one: a consistent ring is slow to build.
func (t *Table) buildHandoff(from int, prev *Table) error {
	if from <= 0 || from == len(t.names) || len(t.names) == 0 {
		return nil
	}
	if prev != nil && prev.Handoff.For(t, from) {
		t.Handoff = prev.Handoff
		return nil
	}
	h, err := t.Plan(from)
	if err != nil {
		return fmt.Errorf("handoff from %d shards: %w", from, err)
	}
	t.Handoff = h
	return nil
}

// SameRing reports whether a and b route every key to the same ring index
// and shard name.
func SameRing(a, b *Table) bool {
	return a != nil && b != nil && a.Fingerprint == b.Fingerprint
}

// Summary lists up to max shards as "name=addr(state)" for logs, with a
// count of the rest.
func (t *Table) Summary(max int) string {
	var b strings.Builder
	for i, s := range t.Shards {
		if i == max {
			fmt.Fprintf(&b, " …%d more", len(t.Shards)-max)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		state := "ready"
		if !s.Ready {
			state = "not-ready"
		}
		fmt.Fprintf(&b, "%s=%s(%s)", s.Name, s.Addr, state)
	}
	return b.String()
}
