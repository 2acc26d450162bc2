package ring

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// benchKeys mixes the two shapes proxies see: numeric account ids, which take
// modulus's integer path, and textual ids, which every ring hashes. A power
// of two lets the loop index with a mask instead of a division.
func benchKeys() [][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	keys := make([][]byte, 1024)
	for i := range keys {
		id := rng.Int64N(1e12)
		if i%2 == 0 {
			keys[i] = strconv.AppendInt(nil, id, 10)
		} else {
			keys[i] = strconv.AppendInt([]byte("user-"), id, 10)
		}
	}
	return keys
}

func BenchmarkOwner(b *testing.B) {
	keys := benchKeys()
	mask := len(keys) - 1
	for _, alg := range Algorithms() {
		for _, n := range []int{3, 16, 64, 256, 1024} {
			b.Run(string(alg)+"/N="+strconv.Itoa(n), func(b *testing.B) {
				r := mustNew(b, Config{Algorithm: alg}, shardNames(n))
				b.ReportAllocs()
				sum := 0
				i := 0
				for b.Loop() {
					sum += r.Owner(keys[i&mask])
					i++
				}
				if sum < 0 {
					b.Fatal("negative owner")
				}
			})
		}
	}
}

func BenchmarkNew(b *testing.B) {
	names := shardNames(1024)
	for _, alg := range Algorithms() {
		b.Run(string(alg)+"/N=1024", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(Config{Algorithm: alg}, names); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
