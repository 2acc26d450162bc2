package memtrim

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestStepTrimsOnlyWhenQuietAndGrown walks the decision through a burst, a
// quiet spell, a trim and a second burst that leaves little behind.
func TestStepTrimsOnlyWhenQuietAndGrown(t *testing.T) {
	tr := &Trimmer{Quiet: time.Second, MinGrowth: 10}
	s := state{base: 100, sinceTrim: minGap * time.Second}
	const tick = 250 * time.Millisecond
	busy, idle := 100*time.Millisecond, time.Millisecond
	steps := []struct {
		cpu       time.Duration
		footprint uint64
		want      bool
		why       string
	}{
		{busy, 500, false, "busy"},
		{idle, 500, false, "quiet 0.25 s"},
		{idle, 500, false, "quiet 0.5 s"},
		{idle, 500, false, "quiet 0.75 s"},
		{idle, 500, true, "quiet 1 s, grown by 400"},
	}
	for i, st := range steps {
		if got := tr.step(&s, tick, st.cpu, st.footprint); got != st.want {
			t.Fatalf("step %d (%s): trim=%v, want %v", i, st.why, got, st.want)
		}
	}
	// After a trim to 120: quiet for long, but not 10 s since the trim.
	s.base, s.sinceTrim, s.quietFor = 120, 0, 0
	for i := 0; i < 4*minGap-1; i++ {
		if tr.step(&s, tick, idle, 500) {
			t.Fatalf("trimmed %v after the last trim; want at most one per %v", s.sinceTrim, minGap*tr.Quiet)
		}
	}
	if !tr.step(&s, tick, idle, 500) {
		t.Fatalf("no trim %v after the last, quiet and grown", s.sinceTrim)
	}
	// Grown by less than MinGrowth: nothing to gain.
	s.base, s.sinceTrim, s.quietFor = 495, 100*time.Second, 0
	for i := 0; i < 10; i++ {
		if tr.step(&s, tick, idle, 500) {
			t.Fatal("trimmed a footprint grown by 5 bytes, under MinGrowth 10")
		}
	}
	// A tick at 3% of a core breaks the quiet spell.
	s.base, s.quietFor = 0, 0
	for i := 0; i < 3; i++ {
		tr.step(&s, tick, idle, 500)
	}
	if tr.step(&s, tick, tick*3/100, 500) || tr.step(&s, tick, idle, 500) {
		t.Fatal("a tick at 3% of a core did not restart the quiet spell")
	}
}

// TestStartGivesMemoryBackWhenQuiet starts a real Trimmer, leaves 64 MiB of
// garbage in the runtime as a burst would, goes quiet, and waits for the
// runtime to have given it back.
func TestStartGivesMemoryBackWhenQuiet(t *testing.T) {
	trimmed := make(chan [2]uint64, 1)
	tr := &Trimmer{Quiet: 100 * time.Millisecond, OnTrim: func(before, after uint64) {
		select {
		case trimmed <- [2]uint64{before, after}:
		default:
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := tr.Start(ctx)
	defer func() { cancel(); <-done }()
	garbage := make([][]byte, 0, 1024)
	for range 1024 {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	select {
	case got := <-trimmed:
		t.Logf("footprint %d MiB before the trim, %d MiB after", got[0]>>20, got[1]>>20)
		if got[0] < got[1]+32<<20 {
			t.Fatalf("the trim gave back %d MiB of 64 MiB of garbage", (int64(got[0])-int64(got[1]))>>20)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no trim within 10 s of quiet; footprint %d MiB", runtimeFootprint()>>20)
	}
}

// TestZeroQuietIsOff: a Trimmer without Quiet never starts.
func TestZeroQuietIsOff(t *testing.T) {
	select {
	case <-(&Trimmer{}).Start(context.Background()):
	default:
		t.Fatal("a Trimmer with Quiet 0 started")
	}
}
