package ring

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
)

func TestConsistentMatchesLibrary(t *testing.T) {
	tests := []struct {
		n, partitions int
	}{
		{1, DefaultPartitions},
		{3, DefaultPartitions},
		{16, DefaultPartitions},
		{100, DefaultPartitions},
		{7, 271},
		{10, 7},
	}
	var buf []byte
	for _, tt := range tests {
		t.Run("N="+strconv.Itoa(tt.n)+"/P="+strconv.Itoa(tt.partitions), func(t *testing.T) {
			names := shardNames(tt.n)
			r := mustNew(t, Config{Algorithm: Consistent, Partitions: tt.partitions}, names)
			lib := consistent.New(members(names), libraryConfig(tt.partitions))
			for i := range 5000 {
				buf = sampleKey(buf, i)
				got, want := names[r.Owner(buf)], lib.LocateKey(buf).String()
				if got != want {
					t.Fatalf("Owner(%q) = %q, library LocateKey = %q", buf, got, want)
				}
			}
		})
	}
}

// TestConsistentOrderIndependent checks that the consistent ring places by
// name: the same shards listed in another order own the same keys, only
// under different indexes.
func TestConsistentOrderIndependent(t *testing.T) {
	names := shardNames(12)
	ref := mustNew(t, Config{Algorithm: Consistent}, names)

	reversed := make([]string, len(names))
	for i, name := range names {
		reversed[len(names)-1-i] = name
	}
	shuffled := append([]string(nil), names...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	// Lexical order puts web-10 before web-2, as a careless sort would.
	lexical := []string{"web-0", "web-1", "web-10", "web-11", "web-2", "web-3", "web-4", "web-5", "web-6", "web-7", "web-8", "web-9"}

	for _, tt := range []struct {
		name  string
		names []string
	}{{"reversed", reversed}, {"shuffled", shuffled}, {"lexical", lexical}} {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, Config{Algorithm: Consistent}, tt.names)
			var buf []byte
			for i := range 10000 {
				buf = sampleKey(buf, i)
				if got, want := tt.names[r.Owner(buf)], names[ref.Owner(buf)]; got != want {
					t.Fatalf("key %q: owner %q, want %q as in ordinal order", buf, got, want)
				}
			}
		})
	}
}

// TestConsistentPartitionLoad checks the bound the library promises: no shard
// owns more than ceil(Load * partitions / N) partitions.
func TestConsistentPartitionLoad(t *testing.T) {
	for _, n := range []int{1, 3, 16, 100, 1000} {
		t.Run("N="+strconv.Itoa(n), func(t *testing.T) {
			if n > 100 && testing.Short() {
				t.Skip("the library builds a 1000-shard ring in about a second, much longer under -race")
			}
			r := mustNew(t, Config{Algorithm: Consistent}, shardNames(n)).(*consistentRing)
			counts := make([]int, n)
			for _, owner := range r.owners {
				counts[owner]++
			}
			bound := int(math.Ceil(float64(DefaultPartitions) / float64(n) * loadFactor))
			lo, hi := counts[0], counts[0]
			for i, c := range counts {
				if c > bound {
					t.Errorf("shard %d owns %d partitions, want at most %d", i, c, bound)
				}
				lo, hi = min(lo, c), max(hi, c)
			}
			t.Logf("N=%d: partitions per shard min %d max %d bound %d mean %.1f",
				n, lo, hi, bound, float64(DefaultPartitions)/float64(n))
		})
	}
}

// TestConsistentFewPartitions documents that fewer partitions than shards is
// not an error for the library, it simply leaves shards without keys.
func TestConsistentFewPartitions(t *testing.T) {
	r := mustNew(t, Config{Algorithm: Consistent, Partitions: 5}, shardNames(20)).(*consistentRing)
	used := map[int32]bool{}
	for _, owner := range r.owners {
		used[owner] = true
	}
	if got := len(used); got > 5 {
		t.Errorf("%d shards own partitions, want at most 5", got)
	}
	t.Logf("5 partitions over 20 shards: %d shards own keys", len(used))
}

func TestCatch(t *testing.T) {
	if err := catch(func() {}); err != nil {
		t.Errorf("catch(no panic) = %v, want nil", err)
	}
	err := catch(func() { panic("not enough room to distribute partitions") })
	if err == nil || err.Error() != "not enough room to distribute partitions" {
		t.Errorf("catch(panic) = %v, want the panic value as error", err)
	}
	err = catch(func() { panic(errors.New("boom")) })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("catch(panic(error)) = %v, want it to contain boom", err)
	}
}
