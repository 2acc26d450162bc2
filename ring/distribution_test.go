package ring

import (
	"math"
	"strconv"
	"testing"
)

// Sample sizes are fixed and keys deterministic, so these tests never flake;
// the 5-sigma bounds say how far from ideal a fair ring may land by chance.
const sigmas = 5

func sampleSize(full int) int {
	if testing.Short() {
		return full / 10
	}
	return full
}

// binomialSlack is sigmas standard deviations of a count of k trials with
// success probability p.
func binomialSlack(k int, p float64) float64 {
	return sigmas * math.Sqrt(float64(k)*p*(1-p))
}

// moved counts the sample keys whose owner differs between a and b, and calls
// check on each of them.
func moved(a, b Ring, keys int, check func(key []byte, from, to int)) int {
	var buf []byte
	n := 0
	for i := range keys {
		buf = sampleKey(buf, i)
		from, to := a.Owner(buf), b.Owner(buf)
		if from != to {
			n++
			if check != nil {
				check(buf, from, to)
			}
		}
	}
	return n
}

func TestJumpMovement(t *testing.T) {
	keys := sampleSize(100_000)
	for _, n := range []int{1, 2, 3, 10, 31, 100, 255} {
		small := mustNew(t, Config{}, shardNames(n))
		large := mustNew(t, Config{}, shardNames(n+1))
		t.Run("grow/"+strconv.Itoa(n)+"->"+strconv.Itoa(n+1), func(t *testing.T) {
			got := moved(small, large, keys, func(key []byte, from, to int) {
				if to != n {
					t.Errorf("key %q moved %d -> %d, want moves only to the new shard %d", key, from, to, n)
				}
			})
			p := 1 / float64(n+1)
			checkFraction(t, got, keys, p)
		})
		t.Run("shrink/"+strconv.Itoa(n+1)+"->"+strconv.Itoa(n), func(t *testing.T) {
			var buf []byte
			removed := 0
			for i := range keys {
				buf = sampleKey(buf, i)
				if large.Owner(buf) == n {
					removed++
				}
			}
			got := moved(large, small, keys, func(key []byte, from, to int) {
				if from != n {
					t.Errorf("key %q moved %d -> %d, want only keys of the removed shard %d to move", key, from, to, n)
				}
			})
			if got != removed {
				t.Errorf("%d keys moved, want exactly the %d keys of the removed shard", got, removed)
			}
			checkFraction(t, got, keys, 1/float64(n+1))
		})
	}
}

func checkFraction(t *testing.T, got, keys int, p float64) {
	t.Helper()
	want := p * float64(keys)
	slack := binomialSlack(keys, p)
	t.Logf("moved %d of %d keys (%.4f), ideal %.4f", got, keys, float64(got)/float64(keys), p)
	if math.Abs(float64(got)-want) > slack {
		t.Errorf("moved %d keys, want %.0f ± %.0f", got, want, slack)
	}
}

// TestMovementReport logs how the rings without jump's guarantee behave
// when the StatefulSet scales, for the README and for operators choosing a
// ring. It checks only what each ring does promise.
func TestMovementReport(t *testing.T) {
	keys := sampleSize(100_000)
	for _, alg := range []Algorithm{Consistent, Modulus} {
		for _, n := range []int{3, 10, 100} {
			small := mustNew(t, Config{Algorithm: alg}, shardNames(n))
			large := mustNew(t, Config{Algorithm: alg}, shardNames(n+1))
			t.Run(string(alg)+"/"+strconv.Itoa(n), func(t *testing.T) {
				grow, toNew := 0, 0
				grow = moved(small, large, keys, func(_ []byte, _, to int) {
					if to == n {
						toNew++
					}
				})
				shrink := moved(large, small, keys, nil)
				t.Logf("%s N=%d->%d: moved %.4f (%.4f to the new shard; ideal %.4f); N=%d->%d: moved %.4f (ideal %.4f)",
					alg, n, n+1, float64(grow)/float64(keys), float64(toNew)/float64(keys), 1/float64(n+1),
					n+1, n, float64(shrink)/float64(keys), 1/float64(n+1))
				if alg == Modulus {
					// k mod N and k mod N+1 agree only when k mod N(N+1) < N.
					want := float64(n) / float64(n+1)
					if math.Abs(float64(grow)/float64(keys)-want) > 0.02 {
						t.Errorf("modulus moved %.4f of keys, want about %.4f", float64(grow)/float64(keys), want)
					}
				}
			})
		}
	}
}

func counts(r Ring, keys int, key func(buf []byte, i int) []byte) []int {
	c := make([]int, r.Len())
	var buf []byte
	for i := range keys {
		buf = key(buf, i)
		c[r.Owner(buf)]++
	}
	return c
}

func numericKey(buf []byte, i int) []byte { return strconv.AppendInt(buf[:0], int64(i), 10) }

func TestBalance(t *testing.T) {
	keys := sampleSize(1_000_000)
	for _, alg := range Algorithms() {
		for _, n := range []int{3, 16, 64} {
			t.Run(string(alg)+"/N="+strconv.Itoa(n), func(t *testing.T) {
				r := mustNew(t, Config{Algorithm: alg}, shardNames(n))
				c := counts(r, keys, sampleKey)
				mean := float64(keys) / float64(n)
				lo, hi := extremes(c)
				t.Logf("%s N=%d: keys per shard min %d max %d mean %.0f (max %+.2f%%, min %+.2f%%)",
					alg, n, lo, hi, mean, 100*(float64(hi)/mean-1), 100*(float64(lo)/mean-1))
				slack := binomialSlack(keys, 1/float64(n))
				if alg == Consistent {
					// Partitions are balanced to within Load; keys within a
					// partition add only sampling noise on top.
					if limit := mean*loadFactor + slack; float64(hi) > limit {
						t.Errorf("busiest shard has %d keys, want at most %.0f (load %.2f)", hi, limit, loadFactor)
					}
					return
				}
				for i, got := range c {
					if math.Abs(float64(got)-mean) > slack {
						t.Errorf("shard %d has %d keys, want %.0f ± %.0f", i, got, mean, slack)
					}
				}
			})
		}
	}
	t.Run("modulus/consecutive integers", func(t *testing.T) {
		const n = 16
		c := counts(mustNew(t, Config{Algorithm: Modulus}, shardNames(n)), keys, numericKey)
		for i, got := range c {
			if want := keys / n; got != want && got != want+1 {
				t.Errorf("shard %d has %d of keys 0..%d, want %d or %d", i, got, keys-1, want, want+1)
			}
		}
	})
}

func extremes(c []int) (lo, hi int) {
	lo, hi = c[0], c[0]
	for _, v := range c {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}
