package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in the manner of HdrHistogram:
// values below 64 ns are exact, above that each power of two is split into
// 32 buckets, so a recorded value is known within 1/32 (3%) of itself, at
// any magnitude, in a fixed 15 KiB. Recording is an index computation and
// an increment; each caller has its own, merged at the end.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

const (
	histSub     = 32                     // buckets per power of two above 64
	histBuckets = 2*histSub + 63*histSub // enough for every uint64
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 6 // v>>shift is in [32, 63]
	return 2*histSub + (shift-1)*histSub + int(v>>shift) - histSub
}

// histValue is the middle of bucket i: the value reported for it.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	j := i - 2*histSub
	shift := j/histSub + 1
	lo := uint64(j%histSub+histSub) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *hist) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the value below or at which a fraction q of the recorded
// values lie (the nearest-rank definition), as the middle of its bucket,
// never above the largest value recorded.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}
