// Package hotkeys finds the most frequent keys per shard over a sliding
// minute (/hotkeys): sampled on the request path with atomics only, summed
// in bounded memory off it. Keys appear here alone, never in metrics or
// logs.
package hotkeys

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Hot keys: one request in HotKeySample leaves its key in a ring of slots,
// written with atomic stores only (no lock, no allocation on the request
// path); a background loop drains the ring every second into a
// Space-Saving summary per shard and per 10-second bucket, and /hotkeys
// merges the buckets of the last minute.
const (
	hotSlots      = 4096 // the ring; a burst beyond it between drains loses samples, not requests
	hotKeyMax     = 64   // bytes of a key kept (longer keys are cut)
	hotCapacity   = 64   // keys tracked per shard and bucket
	hotBucket     = 10 * time.Second
	hotBuckets    = 6 // the window: hotBuckets × hotBucket
	hotDrainEvery = time.Second
)

// hotSlot is one sampled key; seq is odd while it is being written, and
// 2i+2 once sample i is complete in it.
type hotSlot struct {
	seq   atomic.Uint64
	shard atomic.Uint32
	n     atomic.Uint32
	w     [hotKeyMax / 8]atomic.Uint64
}

// Sampler is the sampler and its summaries. It is safe for concurrent
// use: Sample uses atomics only; drain, rotate and top take mu. A nil
// *Sampler samples nothing.
type Sampler struct {
	every uint64
	seen  atomic.Uint64
	head  atomic.Uint64
	slots [hotSlots]hotSlot

	mu      sync.Mutex                       // guards next and buckets; never taken by sample
	next    uint64                           // the next sample index to read
	buckets [hotBuckets]map[int]*spaceSaving // by shard index; [0] is the current bucket
	started time.Time
}

// New returns a Sampler that keeps one request in every; Run drains it.
func New(every int) *Sampler {
	h := &Sampler{every: uint64(max(every, 1)), started: time.Now()}
	for i := range h.buckets {
		h.buckets[i] = map[int]*spaceSaving{}
	}
	return h
}

// Sample records key for the shard at ring index i, one request in every.
func (h *Sampler) Sample(i int, key []byte) {
	// The count is scrambled (Fibonacci hashing) before the modulus, so
	// that a client's regular pattern (every 4th request the same key)
	// does not line up with the sampling.
	if h == nil || (h.seen.Add(1)*0x9E3779B97F4A7C15>>32)%h.every != 0 {
		return
	}
	idx := h.head.Add(1) - 1
	s := &h.slots[idx%hotSlots]
	s.seq.Store(2*idx + 1)
	s.shard.Store(uint32(i))
	n := min(len(key), hotKeyMax)
	s.n.Store(uint32(n))
	for w := 0; w*8 < n; w++ {
		var v uint64
		for b := 0; b < 8 && w*8+b < n; b++ {
			v |= uint64(key[w*8+b]) << (8 * b)
		}
		s.w[w].Store(v)
	}
	s.seq.Store(2*idx + 2)
}

// drain moves the samples written since the last drain into the current
// bucket.
func (h *Sampler) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	head := h.head.Load()
	if head-h.next > hotSlots {
		h.next = head - hotSlots // overwritten meanwhile: lost
	}
	for ; h.next < head; h.next++ {
		shard, key, ok := h.read(h.next)
		if !ok {
			continue
		}
		b := h.buckets[0]
		if b[shard] == nil {
			b[shard] = newSpaceSaving(hotCapacity)
		}
		b[shard].add(key)
	}
}

// read copies sample idx out of its slot, if it is still there, whole.
func (h *Sampler) read(idx uint64) (int, string, bool) {
	s := &h.slots[idx%hotSlots]
	if s.seq.Load() != 2*idx+2 {
		return 0, "", false
	}
	shard, n := int(s.shard.Load()), int(s.n.Load())
	var buf [hotKeyMax]byte
	for w := 0; w*8 < n; w++ {
		v := s.w[w].Load()
		for b := 0; b < 8; b++ {
			buf[w*8+b] = byte(v >> (8 * b))
		}
	}
	if s.seq.Load() != 2*idx+2 || n > hotKeyMax {
		return 0, "", false
	}
	return shard, string(buf[:n]), true
}

// rotate starts a new bucket, dropping the oldest.
func (h *Sampler) rotate() {
	h.mu.Lock()
	copy(h.buckets[1:], h.buckets[:hotBuckets-1])
	h.buckets[0] = map[int]*spaceSaving{}
	h.mu.Unlock()
}

// Run drains and rotates until stop is closed.
func (h *Sampler) Run(stop <-chan struct{}) {
	drain := time.NewTicker(hotDrainEvery)
	defer drain.Stop()
	rotate := time.NewTicker(hotBucket)
	defer rotate.Stop()
	for {
		select {
		case <-stop:
			return
		case <-drain.C:
			h.drain()
		case <-rotate.C:
			h.drain()
			h.rotate()
		}
	}
}

// Key is one frequent key and its estimated request rate.
type Key struct {
	Key  string  `json:"key"`
	Rate float64 `json:"rate"`
}

// top returns, per shard index, the n most frequent keys of the window
// with their estimated rates (requests per second).
func (h *Sampler) top(n int) (map[int][]Key, float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	window := min(time.Since(h.started), hotBuckets*hotBucket).Seconds()
	window = max(window, 1)
	merged := map[int]map[string]uint64{}
	for _, b := range h.buckets {
		for shard, ss := range b {
			if merged[shard] == nil {
				merged[shard] = map[string]uint64{}
			}
			for k, c := range ss.counts {
				merged[shard][k] += c
			}
		}
	}
	out := map[int][]Key{}
	for shard, counts := range merged {
		keys := make([]Key, 0, len(counts))
		for k, c := range counts {
			keys = append(keys, Key{Key: k, Rate: float64(c*h.every) / window})
		}
		slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(b.Rate, a.Rate), cmp.Compare(a.Key, b.Key)) })
		out[shard] = keys[:min(n, len(keys))]
	}
	return out, window
}

// spaceSaving counts the most frequent of a stream of keys in bounded
// memory (Metwally et al. 2005): at capacity, a new key takes the place
// (and the count, plus one) of the least counted one.
type spaceSaving struct {
	capacity int
	counts   map[string]uint64
}

func newSpaceSaving(capacity int) *spaceSaving {
	return &spaceSaving{capacity: capacity, counts: make(map[string]uint64, capacity)}
}

func (s *spaceSaving) add(key string) {
	if _, ok := s.counts[key]; ok || len(s.counts) < s.capacity {
		s.counts[key]++
		return
	}
	minKey, minCount := "", uint64(0)
	for k, c := range s.counts {
		if minKey == "" || c < minCount {
			minKey, minCount = k, c
		}
	}
	delete(s.counts, minKey)
	s.counts[key] = minCount + 1
}

// Answer is the body of /hotkeys.
type Answer struct {
	WindowS    float64     `json:"window_s"`
	SampleRate float64     `json:"sample_rate"`
	Shards     []ShardKeys `json:"shards"`
}

// ShardKeys is one shard's part of /hotkeys.
type ShardKeys struct {
	Shard string `json:"shard"`
	Keys  []Key  `json:"keys"`
}

// Top returns the n most frequent keys per shard over the last minute
// (only shard's, when not ""); names are the shards' names by ring index.
func (h *Sampler) Top(n int, shard string, names []string) Answer {
	a := Answer{Shards: []ShardKeys{}}
	if h == nil {
		return a
	}
	h.drain()
	top, window := h.top(n)
	a.WindowS, a.SampleRate = window, 1/float64(h.every)
	for i, name := range names {
		if (shard == "" || name == shard) && (len(top[i]) > 0 || shard != "") {
			a.Shards = append(a.Shards, ShardKeys{Shard: name, Keys: append([]Key{}, top[i]...)})
		}
	}
	return a
}
