// Package memtrim gives memory back to the system once the process has gone
// quiet after a burst.
//
// A Go process keeps the heap a burst left behind: the next collection,
// which would free the burst's garbage and the buffers its pools kept, only
// comes with the next allocations, and a quiet proxy (thousands of parked
// keep-alive connections, requests held by a shard that thinks) allocates
// nothing. Its resident size then stays at the burst's until traffic
// returns. A Trimmer watches the process's CPU time; once the process has
// used almost none for Quiet, and the Go runtime holds at least MinGrowth
// more than after the last trim, it collects and returns the free memory
// (debug.FreeOSMemory): one collection, at a moment when nothing waits
// for it.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"
)

// Defaults of a Trimmer's zero fields.
const (
	DefaultMinGrowth = 8 << 20
	// quietShare is the share of one core under which a tick counts as
	// quiet: a parker's sweep over 20,000 parked connections, a metrics
	// scrape, stays under it; a request a millisecond does not.
	quietShare = 0.02
	// minGap is the least time between two trims, in units of Quiet: a
	// process busy in bursts a little more than Quiet apart trims at most
	// once per minGap*Quiet.
	minGap = 10
)

// Trimmer returns memory to the system when the process is quiet (see the
// package comment). Its zero value is not usable: set Quiet.
type Trimmer struct {
	// Quiet is how long the process must use almost no CPU before a trim.
	Quiet time.Duration
	// MinGrowth is how many bytes more than after the last trim (or at
	// the start) the Go runtime must hold for a trim to be worth its
	// collection; 0 means DefaultMinGrowth.
	MinGrowth uint64

	// The process's measures and the trim, replaced by tests of the
	// decision alone.
	cpu       func() time.Duration
	footprint func() uint64
	trim      func()
	// OnTrim, if set, is called after each trim with the bytes held before
	// and after it.
	OnTrim func(before, after uint64)
}

// state is the decision's memory between ticks.
type state struct {
	quietFor  time.Duration // how long the process has been quiet
	sinceTrim time.Duration // since the last trim (or the start)
	base      uint64        // footprint after the last trim (or at the start)
}

// step takes one tick of length tick in which the process used cpu, with
// the runtime holding footprint bytes, and tells whether to trim now.
func (t *Trimmer) step(s *state, tick, cpu time.Duration, footprint uint64) bool {
	s.sinceTrim += tick
	if float64(cpu) > quietShare*float64(tick) {
		s.quietFor = 0
		return false
	}
	s.quietFor += tick
	growth := t.MinGrowth
	if growth == 0 {
		growth = DefaultMinGrowth
	}
	return s.quietFor >= t.Quiet && s.sinceTrim >= minGap*t.Quiet && footprint >= s.base+growth
}

// Start takes the runtime's footprint now as the base that later growth is
// measured from, then trims, as the package comment says, on a goroutine
// of its own until ctx ends; the channel it returns is closed then.
func (t *Trimmer) Start(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if t.Quiet <= 0 {
		close(done)
		return done
	}
	if t.cpu == nil {
		t.cpu, t.footprint, t.trim = processCPU, runtimeFootprint, debug.FreeOSMemory
	}
	s := state{base: t.footprint(), sinceTrim: minGap * t.Quiet}
	go func() {
		defer close(done)
		t.run(ctx, &s)
	}()
	return done
}

func (t *Trimmer) run(ctx context.Context, s *state) {
	tick := max(t.Quiet/4, 10*time.Millisecond)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	last, lastAt := t.cpu(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			c := t.cpu()
			fp := t.footprint()
			if t.step(s, now.Sub(lastAt), c-last, fp) {
				t.trim()
				s.base, s.sinceTrim, s.quietFor = t.footprint(), 0, 0
				if t.OnTrim != nil {
					t.OnTrim(fp, s.base)
				}
				c = t.cpu() // the trim's own work does not break the next quiet spell
			}
			last, lastAt = c, now
		}
	}
}

// processCPU is the CPU time the process used so far, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// footprintMetrics is what the Go runtime holds from the system, less what
// it already gave back.
var footprintMetrics = []string{"/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"}

// runtimeFootprint reads the memory the Go runtime holds and has not
// returned: about the process's private resident memory.
func runtimeFootprint() uint64 {
	s := make([]metrics.Sample, len(footprintMetrics))
	for i, name := range footprintMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}
