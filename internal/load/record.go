package load

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds, in microseconds: 1µs to 10 minutes at three
// significant digits (0.1%). A latency beyond the top is recorded as the
// top.
const (
	histLowest  = 1
	histHighest = int64(10 * time.Minute / time.Microsecond)
	histDigits  = 3
)

// unrouted is the row of answers without an X-Shard field, and of
// requests that got no answer from a known shard.
const unrouted = "unrouted"

// maxTrackedKeys bounds the key sources whose keys are counted one by one
// (distinct keys per shard, keys seen on two shards, hottest keys).
const maxTrackedKeys = 1 << 21

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

func recordHist(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < histLowest {
		us = histLowest
	} else if us > histHighest {
		us = histHighest
	}
	_ = h.RecordValue(us)
}

// shardStats is what the run learnt of one shard (or of all together).
type shardStats struct {
	name   string
	index  int // 1-based; the keys table stores it
	hist   *hdrhistogram.Histogram
	window *hdrhistogram.Histogram // since the last sample
	status [600]int64
	errors map[string]int64
	done   int64 // answers and errors
	keys   int64 // distinct keys answered, when tracked
	series []Point
}

func newShardStats(name string, index int) *shardStats {
	return &shardStats{name: name, index: index, hist: newHist(), window: newHist(), errors: map[string]int64{}}
}

// recorder gathers every request's outcome. It is safe for concurrent
// use: one mutex, held for a few hundred nanoseconds per request.
type recorder struct {
	mu     sync.Mutex
	start  time.Time
	all    *shardStats
	shards map[string]*shardStats
	order  []*shardStats
	// How late each open-loop send left; nLate counts those later than
	// lateAfter.
	late      *hdrhistogram.Histogram
	nLate     int64
	lateAfter time.Duration

	// Per key, when the source has at most maxTrackedKeys: the shard that
	// answered it first (1-based, 0 for none yet) and its answers.
	keyShard []uint16
	keyHits  []uint32
	split    int64 // keys answered by more than one shard
}

func newRecorder(start time.Time, keys KeySource, lateAfter time.Duration) *recorder {
	r := &recorder{start: start, all: newShardStats("all", 0), shards: map[string]*shardStats{}, late: newHist(), lateAfter: lateAfter}
	if n := keys.Len(); n <= maxTrackedKeys {
		r.keyShard = make([]uint16, n)
		r.keyHits = make([]uint32, n)
	}
	return r
}

// outcome is one request's result.
type outcome struct {
	key     uint64
	shard   []byte
	status  int    // 0 when err
	errKind string // set when the request got no answer
	latency time.Duration
	// paced is set for an open-loop request, and lateness is how long
	// after its due time it was sent.
	paced    bool
	lateness time.Duration
}

func (r *recorder) record(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.paced {
		recordHist(r.late, max(o.lateness, 0))
		if o.lateness > r.lateAfter {
			r.nLate++
		}
	}
	s := r.shardLocked(o.shard)
	for _, st := range [2]*shardStats{r.all, s} {
		st.done++
		if o.errKind != "" {
			st.errors[o.errKind]++
			continue
		}
		if o.status > 0 && o.status < len(st.status) {
			st.status[o.status]++
		}
		recordHist(st.hist, o.latency)
		recordHist(st.window, o.latency)
	}
	if o.errKind == "" && r.keyShard != nil && o.key < uint64(len(r.keyShard)) {
		r.countKeyLocked(o.key, s)
	}
}

func (r *recorder) countKeyLocked(key uint64, s *shardStats) {
	switch prev := r.keyShard[key]; {
	case prev == 0:
		r.keyShard[key] = uint16(s.index)
		s.keys++
		r.all.keys++
	case int(prev) != s.index && s.name != unrouted:
		r.split++
		r.keyShard[key] = uint16(s.index) // count each move once
	}
	if r.keyHits[key] < ^uint32(0) {
		r.keyHits[key]++
	}
}

// shardLocked finds or makes the row of the shard named name; the string
// conversion in the map lookup does not allocate.
func (r *recorder) shardLocked(name []byte) *shardStats {
	if len(name) == 0 {
		name = []byte(unrouted)
	}
	if s, ok := r.shards[string(name)]; ok {
		return s
	}
	if len(r.order) >= 1<<15 {
		// A server that names a new shard in every answer: one row for
		// the rest, so memory stays bounded.
		name = []byte("other")
		if s, ok := r.shards["other"]; ok {
			return s
		}
	}
	s := newShardStats(string(name), len(r.order)+1)
	r.shards[s.name] = s
	r.order = append(r.order, s)
	return s
}

// Point is one interval of one shard's latency over time.
type Point struct {
	// T is the end of the interval, in seconds since the start.
	T float64 `json:"t"`
	// N is the number of answers in the interval.
	N int64 `json:"n"`
	// P50, P99 and Max are latencies in milliseconds (0 when N is 0).
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// sample closes an interval at now: each shard's window becomes a Point.
// It returns the overall Point.
func (r *recorder) sample(now time.Time) Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := now.Sub(r.start).Seconds()
	var all Point
	for _, s := range append([]*shardStats{r.all}, r.order...) {
		p := Point{T: t, N: s.window.TotalCount()}
		if p.N > 0 {
			p.P50, p.P99, p.Max = ms(s.window.ValueAtQuantile(50)), ms(s.window.ValueAtQuantile(99)), ms(s.window.Max())
		}
		s.window.Reset()
		s.series = append(s.series, p)
		if s == r.all {
			all = p
		}
	}
	return all
}

// ms converts microseconds to milliseconds.
func ms(us int64) float64 { return float64(us) / 1000 }
