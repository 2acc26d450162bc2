package ring

import (
	"slices"
	"strconv"
)

// SampleKeys is how many keys Compare hashes when it cannot compare two
// rings exactly. At 100,000 keys a fraction p is known to within
// sqrt(p(1-p)/100000), under 0.0016, while a comparison still takes
// milliseconds.
const SampleKeys = 100_000

// sampleSeed starts the sample's key sequence. It is fixed so that every
// replica, and every call, estimates from the same keys and so gives the
// same answer.
const sampleSeed = 0x5eed_5ba2_d000_0001

// Move is the share of the key space that leaves one shard for another when
// a key's owner under one ring differs from its owner under the other.
type Move struct {
	// From and To are shard indexes in the first and the second ring.
	From, To int
	// Fraction is the share of all keys that make this move, in (0, 1].
	Fraction float64
}

// Diff is what replacing one ring with another does to the keys.
type Diff struct {
	// Moves lists every (from, to) pair that some key takes, sorted by From
	// then To; keys that stay are not listed.
	Moves []Move
	// Moved is the share of all keys whose owner changes: the sum of the
	// moves' fractions.
	Moved float64
	// Exact reports that the fractions are exact; otherwise they are
	// estimated from a deterministic sample of SampleKeys keys.
	Exact bool
	// Sampled is the number of keys the estimate counted; 0 when Exact.
	Sampled int
}

// Compare reports how keys move when ring b replaces ring a. Two consistent
// rings with the same partition count are compared exactly, partition by
// partition, since a partition is 1/partitions of the key space; any other
// pair is estimated from SampleKeys keys that are the same on every call.
// It allocates one slice of at most max(partitions, SampleKeys) entries
// besides the answer, never per key. Both rings must be non-empty; an empty
// one gives the zero Diff.
func Compare(a, b Ring) Diff {
	if a.Len() == 0 || b.Len() == 0 {
		return Diff{}
	}
	ca, okA := a.(*consistentRing)
	cb, okB := b.(*consistentRing)
	if okA && okB && ca.parts == cb.parts {
		return tally(comparePartitions(ca, cb), len(ca.owners), true)
	}
	return tally(compareSample(a, b), SampleKeys, false)
}

// A pair packs a move's from index into the high half and its to index into
// the low half, so that sorting pairs orders moves by from then to.
func pair(from, to int) uint64 { return uint64(from)<<32 | uint64(uint32(to)) }

func comparePartitions(a, b *consistentRing) []uint64 {
	var pairs []uint64
	for p, from := range a.owners {
		if to := b.owners[p]; from != to {
			if pairs == nil {
				pairs = make([]uint64, 0, len(a.owners))
			}
			pairs = append(pairs, pair(int(from), int(to)))
		}
	}
	return pairs
}

// compareSample owns the sample's only buffers: one key, reused, and the
// pairs of the keys that move, sized for the worst case up front.
func compareSample(a, b Ring) []uint64 {
	var buf [20]byte // the longest decimal uint64
	var pairs []uint64
	x := uint64(sampleSeed)
	for range SampleKeys {
		var k uint64
		x, k = splitmix64(x)
		key := strconv.AppendUint(buf[:0], k, 10)
		if from, to := a.Owner(key), b.Owner(key); from != to {
			if pairs == nil {
				pairs = make([]uint64, 0, SampleKeys)
			}
			pairs = append(pairs, pair(from, to))
		}
	}
	return pairs
}

// splitmix64 advances state and returns it with the next value: a
// well-mixed, fixed sequence. Sample keys are decimal integers so that
// modulus takes its integer path, the one its users route by; every other
// ring hashes them, for which any distinct keys would do.
func splitmix64(state uint64) (next, value uint64) {
	next = state + 0x9e3779b97f4a7c15
	z := next
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return next, z ^ (z >> 31)
}

// tally counts equal pairs into moves, each count a share of total.
func tally(pairs []uint64, total int, exact bool) Diff {
	d := Diff{Moves: []Move{}, Exact: exact}
	if !exact {
		d.Sampled = total
	}
	slices.Sort(pairs)
	for i := 0; i < len(pairs); {
		j := i + 1
		for j < len(pairs) && pairs[j] == pairs[i] {
			j++
		}
		d.Moves = append(d.Moves, Move{
			From:     int(pairs[i] >> 32),
			To:       int(uint32(pairs[i])),
			Fraction: float64(j-i) / float64(total),
		})
		i = j
	}
	d.Moved = float64(len(pairs)) / float64(total)
	return d
}
