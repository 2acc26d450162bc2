package workers

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Calls given one after another, each after the last one ended, run on
// one worker; once they stop, the worker is retired and the sweeper
// stops: no goroutine is left.
func TestPoolReusesThenRetires(t *testing.T) {
	defer goleak.VerifyNone(t)
	var mu sync.Mutex
	ran := map[int]bool{}
	done := make(chan int)
	// Idle is long beside a call: the worker is not retired between two.
	p := &Pool[*int]{Idle: time.Second, Run: func(v *int) {
		mu.Lock()
		ran[*v] = true
		mu.Unlock()
		done <- *v
	}}
	for i := 1; i <= 50; i++ {
		v := i
		// The previous worker is about to wait, or waits: at most one
		// more starts, when it is not waiting yet.
		p.Go(&v)
		if got := <-done; got != i {
			t.Fatalf("ran %d, want %d", got, i)
		}
		waitFor(t, "the worker waits again", func() bool { return p.idle.Load() == 1 })
		if n := p.Workers(); n != 1 {
			t.Fatalf("after %d calls one after another, %d workers, want 1", i, n)
		}
	}
	waitFor(t, "the idle worker is retired", func() bool { return p.Workers() == 0 })
	waitFor(t, "the sweeper stops", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.sweeping
	})
	if len(ran) != 50 {
		t.Fatalf("%d calls ran, want 50", len(ran))
	}
}

// Calls given while every worker is busy each get a worker of their own.
func TestPoolRunsConcurrentCalls(t *testing.T) {
	defer goleak.VerifyNone(t)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(8)
	p := &Pool[*int]{Idle: 20 * time.Millisecond, Run: func(*int) {
		started.Done()
		<-release
	}}
	for i := range 8 {
		p.Go(&i)
	}
	started.Wait() // all 8 run at once: none waited for another
	if n := p.Workers(); n != 8 {
		t.Fatalf("%d workers for 8 blocked calls, want 8", n)
	}
	close(release)
	waitFor(t, "every worker is retired", func() bool { return p.Workers() == 0 })
	waitFor(t, "the sweeper stops", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.sweeping
	})
}
