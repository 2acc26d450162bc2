package ring

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// jumpRing is jump consistent hashing (Lamping & Veach 2014) over xxhash64.
// It is a single integer, so it is trivially immutable and safe for
// concurrent use.
type jumpRing struct {
	n int32
}

var _ Ring = jumpRing{}

func newJump(n int) jumpRing {
	return jumpRing{n: int32(n)}
}

func (r jumpRing) Owner(key []byte) int {
	return int(jumpHash(xxhash.Sum64(key), r.n))
}

func (r jumpRing) Len() int { return int(r.n) }

// jumpHash returns the bucket in [0, n) of key, for n > 0.
//
// The result is bit-for-bit the paper's loop, which clients reimplement:
//
//	b, j := -1, 0
//	for j < n { b = j; key = key*2862933555777941757 + 1
//	            j = int64(float64(b+1) * (float64(1<<31) / float64((key>>33)+1))) }
//
// but b is carried as a float64. The paper converts b to float and the
// product back to int on every step, and those two conversions are most of
// the latency of the chain each step waits on; Floor does the same
// truncation in one instruction. The results agree because b+1 is an integer
// below 2^31, which a float64 holds exactly; the product is non-negative and
// below 2^62, so truncating it toward zero is flooring it; and a float j is
// >= n exactly when its truncation is.
func jumpHash(key uint64, n int32) int32 {
	limit := float64(n)
	b := 0.0 // the paper's first step always lands on bucket 0
	for {
		key = key*2862933555777941757 + 1
		j := math.Floor((b + 1) * (float64(int64(1)<<31) / float64(int64(key>>33)+1)))
		if j >= limit {
			return int32(b)
		}
		b = j
	}
}
