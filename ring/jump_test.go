package ring

import (
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// paperJump is the loop as published, with integer b and j.
func paperJump(key uint64, n int32) int32 {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int32(b)
}

// jumpSequence is a second, deliberately different reading of Lamping &
// Veach: a key's pseudo-random walk visits buckets 0 = b0 < b1 < b2 < ...,
// and its owner among n buckets is the last bucket of the walk below n. The
// walk is computed once up to limit; the owner for every n then comes from a
// search instead of from re-running the loop.
func jumpSequence(key uint64, limit int64) []int64 {
	seq := []int64{0}
	for {
		key = key*2862933555777941757 + 1
		last := seq[len(seq)-1]
		next := int64(float64(last+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
		if next >= limit {
			return seq
		}
		seq = append(seq, next)
	}
}

func ownerFromSequence(seq []int64, n int64) int64 {
	i := sort.Search(len(seq), func(i int) bool { return seq[i] >= n })
	return seq[i-1]
}

func TestJumpHashKnownValues(t *testing.T) {
	// Computed with an independent Python transliteration of the paper's
	// C++; the first five are also the vectors other jump libraries publish.
	tests := []struct {
		key  uint64
		n    int32
		want int32
	}{
		{1, 1, 0},
		{42, 57, 43},
		{0xDEAD10CC, 1, 0},
		{0xDEAD10CC, 666, 361},
		{256, 1024, 520},
		{0, 10, 0},
		{1<<64 - 1, 100, 92},
		{12345678901234567890, 256, 208},
		{1, 1<<31 - 1, 262355607},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.key, tt.n), func(t *testing.T) {
			if got := jumpHash(tt.key, tt.n); got != tt.want {
				t.Errorf("jumpHash(%d, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
			}
		})
	}
}

func TestJumpMatchesPaper(t *testing.T) {
	var buf []byte
	for i := range 20000 {
		buf = sampleKey(buf, i)
		h := xxhash.Sum64(buf)
		for _, n := range []int32{1, 2, 3, 10, 255, 256, 1 << 16, 1<<31 - 1} {
			if got, want := jumpHash(h, n), paperJump(h, n); got != want {
				t.Fatalf("jumpHash(%d, %d) = %d, want %d", h, n, got, want)
			}
		}
	}
}

// FuzzJump explores keys and sizes the fixed samples miss.
func FuzzJump(f *testing.F) {
	f.Add(uint64(0), int32(1))
	f.Add(uint64(0xDEAD10CC), int32(666))
	f.Add(uint64(1<<64-1), int32(1<<31-1))
	f.Fuzz(func(t *testing.T, key uint64, n int32) {
		n &= math.MaxInt32 // every N the package accepts
		if n == 0 {
			n = 1
		}
		got, want := jumpHash(key, n), paperJump(key, n)
		if got != want {
			t.Fatalf("jumpHash(%d, %d) = %d, want %d", key, n, got, want)
		}
		if got < 0 || got >= n {
			t.Fatalf("jumpHash(%d, %d) = %d, want in [0, %d)", key, n, got, n)
		}
	})
}

func TestJumpMatchesSequence(t *testing.T) {
	const maxN = 1100
	var buf []byte
	for i := range 300 {
		buf = sampleKey(buf, i)
		h := xxhash.Sum64(buf)
		seq := jumpSequence(h, maxN)
		for n := int64(1); n <= maxN; n++ {
			want := ownerFromSequence(seq, n)
			if got := jumpHash(h, int32(n)); int64(got) != want {
				t.Fatalf("jumpHash(xxhash64(%q), %d) = %d, want %d", buf, n, got, want)
			}
		}
	}
}

func TestJumpOwner(t *testing.T) {
	tests := []struct {
		key string
		n   int
	}{
		{"42", 3},
		{"account-1", 3},
		{"", 16},
		{"some much longer key with spaces and ünïcödé", 256},
		{"x", 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/N=%d", tt.key, tt.n), func(t *testing.T) {
			r := mustNew(t, Config{Algorithm: Jump}, shardNames(tt.n))
			want := ownerFromSequence(jumpSequence(xxhash.Sum64([]byte(tt.key)), int64(tt.n)), int64(tt.n))
			if got := r.Owner([]byte(tt.key)); int64(got) != want {
				t.Errorf("Owner(%q) = %d, want %d", tt.key, got, want)
			}
		})
	}
}
