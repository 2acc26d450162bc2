package load

import (
	"context"
	"sync/atomic"
	"time"
)

// job is one open-loop request: its key and when it is due.
type job struct {
	due time.Time
	key uint64
}

// pacer is the state of an open-loop run's schedule.
type pacer struct {
	r       *run
	jobs    chan job
	idle    atomic.Int64 // workers waiting for a job
	workers int
}

// openLoop dispatches cfg.Rate requests a second until cfg.Duration's
// worth are dispatched or ctx is cancelled. It wakes every tick, works
// out from the clock which requests are due, and hands each to an idle
// worker, or to a new one when none is idle (up to MaxConnections). A
// request whose worker starts it late is sent all the same and its
// latency counts from its due time, so a slow server or a slow generator
// shows in the report instead of vanishing.
func (r *run) openLoop(ctx context.Context) error {
	if r.cfg.Rate > maxRate {
		return errRate
	}
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	tick := max(interval, 100*time.Microsecond)
	// Ticks a few microseconds after the due times, not before: a tick
	// just before a due time would leave its request to the next tick.
	tk, err := newTicker(r.start.Add(tick+5*time.Microsecond), tick)
	if err != nil {
		return err
	}
	paceDone := make(chan struct{})
	defer close(paceDone)
	go func() {
		select {
		case <-ctx.Done():
		case <-paceDone:
		}
		tk.Close()
	}()
	p := &pacer{r: r, jobs: make(chan job, 4096)}
	defer close(p.jobs)
	for range r.cfg.Connections {
		p.spawn(nil)
	}
	total := int64(r.cfg.Rate * r.cfg.Duration.Seconds())
	for n := int64(0); ; {
		due := min(int64(time.Since(r.start).Seconds()*r.cfg.Rate)+1, total)
		for ; n < due; n++ {
			j := job{due: r.start.Add(time.Duration(float64(n) * float64(time.Second) / r.cfg.Rate)), key: r.cfg.Keys.Next()}
			if !p.dispatch(ctx, j) {
				return nil
			}
			r.sent.Add(1)
		}
		if n == total {
			break
		}
		if err := tk.Wait(); err != nil {
			return nil // cancelled
		}
	}
	// The schedule's span is the whole Duration, however early its last
	// request was due.
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(r.start.Add(r.cfg.Duration))):
	}
	return nil
}

// dispatch hands j to a worker; false when ctx ended first.
func (p *pacer) dispatch(ctx context.Context, j job) bool {
	if int64(len(p.jobs)) >= p.idle.Load() && p.workers < p.r.cfg.MaxConnections {
		p.spawn(&j)
		return true
	}
	select {
	case p.jobs <- j:
		return true
	case <-ctx.Done():
		return false
	}
}

// spawn starts a worker with a connection of its own, and first as its
// first job if set.
func (p *pacer) spawn(first *job) {
	p.workers++
	c := p.r.newConn()
	p.r.wg.Add(1)
	go func() {
		defer p.r.wg.Done()
		var (
			o   outcome
			a   Answer
			buf []byte
		)
		if first != nil {
			buf = p.r.send(c, &o, buf, &a, *first)
		}
		for {
			p.idle.Add(1)
			j, ok := <-p.jobs
			p.idle.Add(-1)
			if !ok {
				return
			}
			buf = p.r.send(c, &o, buf, &a, j)
		}
	}()
}

// send sends j now, measuring from its due time.
func (r *run) send(c Conn, o *outcome, buf []byte, a *Answer, j job) []byte {
	o.key, o.paced, o.lateness = j.key, true, time.Since(j.due)
	return r.do(c, o, buf, a, j.due)
}
