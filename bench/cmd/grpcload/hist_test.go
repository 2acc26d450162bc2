package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexMonotoneAndPrecise(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1<<63 + 1, ^uint64(0)} {
		i := histIndex(v)
		if i < prev || i >= histBuckets {
			t.Fatalf("index of %d is %d (previous %d, buckets %d)", v, i, prev, histBuckets)
		}
		prev = i
		mid := histValue(i)
		if v < 64 && mid != v {
			t.Errorf("value %d: bucket %d reports %d, want exact", v, i, mid)
		}
		if v >= 64 {
			lo, hi := float64(v)*(1-1.0/32), float64(v)*(1+1.0/32)
			if f := float64(mid); f < lo || f > hi {
				t.Errorf("value %d: bucket %d reports %d, off by more than 1/32", v, i, mid)
			}
		}
	}
	for v := uint64(0); v < 1<<16; v++ { // every bucket boundary up to 64 µs
		if a, b := histIndex(v), histIndex(v+1); b < a || b > a+1 {
			t.Fatalf("index jumps from %d to %d between %d and %d", a, b, v, v+1)
		}
	}
}

func TestHistQuantilesMatchSortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var hs [4]hist
	var all []time.Duration
	for i := range 100000 {
		// log-normal-ish latencies, 50 µs .. 50 ms
		d := time.Duration(50e3 * (1 + r.ExpFloat64()*r.ExpFloat64()*30))
		all = append(all, d)
		hs[i%4].record(d)
	}
	var h hist
	for i := range hs {
		h.merge(&hs[i])
	}
	slices.Sort(all)
	if h.n != uint64(len(all)) || time.Duration(h.max) != all[len(all)-1] {
		t.Fatalf("n=%d max=%d, want %d and %d", h.n, h.max, len(all), all[len(all)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(q*float64(len(all))+0.999999)-1]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff > 1.0/32 || diff < -1.0/32 {
			t.Errorf("q%.3f = %v, the sample says %v", q, got, want)
		}
	}
	var empty hist
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

func TestKeysAreTenDigitsAndSeeded(t *testing.T) {
	a, b, c := newKeyGen(42, 3), newKeyGen(42, 3), newKeyGen(42, 4)
	same := true
	for range 1000 {
		ka, kb, kc := a.next(), b.next(), c.next()
		if len(ka) != 10 || ka[0] == '0' {
			t.Fatalf("key %q is not ten digits", ka)
		}
		if ka != kb {
			t.Fatalf("same seed and stream, different keys: %s %s", ka, kb)
		}
		same = same && ka == kc
	}
	if same {
		t.Error("streams 3 and 4 draw the same keys")
	}
}
