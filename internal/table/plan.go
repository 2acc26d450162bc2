package table

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shard-proxy/shard-proxy/ring"
)

// Planned is the ring a Table's ring would become with another number of
// shards: the same configuration, today's shards for the ordinals that stay,
// and new shards named the way today's are (web-3 after web-0…web-2). It is
// immutable and safe for concurrent use.
type Planned struct {
	// Ring is the planned ring over Names.
	Ring ring.Ring
	// Names and Ordinals describe the planned shards by ring index.
	Names    []string
	Ordinals []int

	from        ring.Ring
	fingerprint string
}

// Plan builds the ring over m shards that would replace t's. Building a
// consistent ring costs about a second at m=1024, so callers that answer
// often should keep the result; For says whether a kept one still applies.
func (t *Table) Plan(m int) (*Planned, error) {
	if m < 1 {
		return nil, fmt.Errorf("planning a ring of %d shards: want at least 1", m)
	}
	if t.Ring.Len() == 0 {
		return nil, fmt.Errorf("planning a ring of %d shards: the table has none to start from", m)
	}
	names, ordinals := t.plannedShards(m)
	r, err := ring.New(t.Config, names)
	if err != nil {
		return nil, fmt.Errorf("building %s ring for %d planned shards: %w", t.Config.Algorithm, m, err)
	}
	return &Planned{Ring: r, Names: names, Ordinals: ordinals, from: t.Ring, fingerprint: t.Fingerprint}, nil
}

// For reports whether p is t's ring resized to m shards.
func (p *Planned) For(t *Table, m int) bool {
	return p != nil && t != nil && p.fingerprint == t.Fingerprint && p.Ring.Len() == m
}

// Owner returns the planned owner of key, as an ordinal and a name.
func (p *Planned) Owner(key []byte) (ordinal int, name string) {
	i := p.Ring.Owner(key)
	return p.Ordinals[i], p.Names[i]
}

// Diff compares today's ring with the planned one (see ring.Compare).
func (p *Planned) Diff() ring.Diff { return ring.Compare(p.from, p.Ring) }

// plannedShards names the first m shards of t's naming: today's ring
// shards for the indexes below N, then ordinals counting on from the last
// one, named by the prefix that today's names put before their ordinals.
func (t *Table) plannedShards(m int) (names []string, ordinals []int) {
	n := t.Ring.Len()
	names, ordinals = make([]string, m), make([]int, m)
	for i := range min(n, m) {
		names[i], ordinals[i] = t.names[i], t.Shards[i].Ordinal
	}
	if m <= n {
		return names, ordinals
	}
	prefix := t.namePrefix()
	last := t.Shards[n-1].Ordinal
	for i := n; i < m; i++ {
		ordinals[i] = last + i - n + 1
		names[i] = prefix + strconv.Itoa(ordinals[i])
	}
	return names, ordinals
}

// namePrefix is what today's ring shards put before their ordinals: "web-"
// for web-0…web-2. Names that do not all end in their ordinals after one
// shared prefix fall back to the longest prefix they share.
func (t *Table) namePrefix() string {
	n := t.Ring.Len()
	prefix, ok := strings.CutSuffix(t.names[0], strconv.Itoa(t.Shards[0].Ordinal))
	for i := 1; ok && i < n; i++ {
		ok = t.names[i] == prefix+strconv.Itoa(t.Shards[i].Ordinal)
	}
	if ok {
		return prefix
	}
	prefix = t.names[0]
	for _, name := range t.names[1:n] {
		k := 0
		for k < len(prefix) && k < len(name) && prefix[k] == name[k] {
			k++
		}
		prefix = prefix[:k]
	}
	return prefix
}
