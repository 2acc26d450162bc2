package ring

import (
	"fmt"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// The library's tuning knobs are fixed by the contract: another system that
// places keys with the same library and settings must agree with us.
const (
	replicationFactor = 20
	loadFactor        = 1.25
)

// consistentRing is a snapshot of a buraksezer/consistent ring. The library
// guards its partition table with a RWMutex, so instead of calling LocateKey
// per request we copy the table once at build time. The copy is never
// written after newConsistent returns, so it is safe for concurrent use.
type consistentRing struct {
	// owners[p] is the shard index owning partition p.
	owners []int32
	// parts is len(owners); kept as uint64 so Owner's modulo needs no
	// conversion.
	parts uint64
	// n is the shard count. It cannot be read off owners: with fewer
	// partitions than shards, or just unlucky placement, some shards own no
	// partition at all. That is the library's behaviour, not an error.
	n int
}

var _ Ring = (*consistentRing)(nil)

// member adapts a shard name to the library, which places members by
// String(); placing by name rather than index is what makes the consistent
// ring independent of the order names arrive in.
type member string

func (m member) String() string { return string(m) }

// xxhasher is the contract's hash; the library has no default.
type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

func newConsistent(names []string, partitions int) (*consistentRing, error) {
	var c *consistent.Consistent
	err := catch(func() {
		c = consistent.New(members(names), libraryConfig(partitions))
	})
	if err != nil {
		return nil, fmt.Errorf("consistent ring cannot place %d partitions on %d shards with load %.2f: %w "+
			"(try a different --partitions)", partitions, len(names), loadFactor, err)
	}
	index := make(map[string]int32, len(names))
	for i, name := range names {
		index[name] = int32(i)
	}
	r := &consistentRing{owners: make([]int32, partitions), parts: uint64(partitions), n: len(names)}
	for p := range r.owners {
		m := c.GetPartitionOwner(p)
		if m == nil {
			return nil, fmt.Errorf("consistent ring left partition %d of %d without an owner", p, partitions)
		}
		i, ok := index[m.String()]
		if !ok {
			return nil, fmt.Errorf("consistent ring gave partition %d to unknown shard %q", p, m.String())
		}
		r.owners[p] = i
	}
	return r, nil
}

func libraryConfig(partitions int) consistent.Config {
	return consistent.Config{
		Hasher:            xxhasher{},
		PartitionCount:    partitions,
		ReplicationFactor: replicationFactor,
		Load:              loadFactor,
	}
}

func members(names []string) []consistent.Member {
	ms := make([]consistent.Member, len(names))
	for i, name := range names {
		ms[i] = member(name)
	}
	return ms
}

// catch turns a panic in f into an error. The library reports a ring it
// cannot fill by panicking, and a topology change must never crash the proxy.
// With Load 1.25 the shards' combined capacity, N*ceil(1.25*P/N), always
// exceeds P, so v1.0.0 should never panic here; this guards against inputs
// or library versions that break that arithmetic.
func catch(f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	f()
	return nil
}

// Owner is the library's LocateKey without its lock: FindPartitionID is
// xxhash64(key) mod PartitionCount, and owners is its partition table.
func (r *consistentRing) Owner(key []byte) int {
	return int(r.owners[xxhash.Sum64(key)%r.parts])
}

// Len is the number of shards, not partitions.
func (r *consistentRing) Len() int { return r.n }
