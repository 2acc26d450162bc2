package hotkeys

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func newTestHotKeys(every int) *Sampler {
	h := New(every)
	h.started = time.Now().Add(-time.Minute)
	return h
}

// TestHotKeysFindsTheHotOnes: one key in ten thousand requests is far
// hotter than the rest; concurrent samplers (as requests are) and the
// drain find it first, with a rate near the truth.
func TestHotKeysFindsTheHotOnes(t *testing.T) {
	h := newTestHotKeys(4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10000 {
				key := "cold-" + strconv.Itoa(g*10000+i)
				if i%4 == 0 {
					key = "hot-42"
				}
				h.Sample(1, []byte(key))
				if i%1000 == 0 {
					h.drain() // concurrently with writers, as the loop does
				}
			}
		})
	}
	wg.Wait()
	h.drain()
	top, window := h.top(3)
	if len(top[1]) == 0 || top[1][0].Key != "hot-42" {
		t.Fatalf("top keys %v, want hot-42 first", top[1])
	}
	want := 10000.0 / window // 4 × 2500 requests for hot-42
	if got := top[1][0].Rate; got < want*0.7 || got > want*1.3 {
		t.Errorf("hot-42 at %.1f/s, want about %.1f/s", got, want)
	}
}

// TestHotKeySampleDoesNotAllocate: the request path's part takes no lock
// and allocates nothing.
func TestHotKeySampleDoesNotAllocate(t *testing.T) {
	h := newTestHotKeys(1)
	key := []byte("account-12345678901234567890123456789012345678901234567890123456789012345")
	if n := testing.AllocsPerRun(1000, func() { h.Sample(2, key) }); n != 0 {
		t.Errorf("%v allocations per sample, want 0", n)
	}
	h.drain()
	top, _ := h.top(1)
	if len(top[2]) != 1 || top[2][0].Key != string(key[:hotKeyMax]) {
		t.Errorf("top %v, want the key cut at %d bytes", top[2], hotKeyMax)
	}
}

// BenchmarkHotKeySample is the request path's cost of hot-key sampling:
// one request in 16 stores its key.
func BenchmarkHotKeySample(b *testing.B) {
	h := newTestHotKeys(16)
	key := []byte("1234567890")
	b.ReportAllocs()
	for b.Loop() {
		h.Sample(3, key)
	}
}
