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
// out from the clock which requests are due, and queues them for the
// workers, adding workers while they cannot keep up (grow). A
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
		p.spawn()
	}
	total := int64(r.cfg.Rate * r.cfg.Duration.Seconds())
	perTick := r.cfg.Rate * tick.Seconds()
	for n := int64(0); ; {
		due := min(int64(time.Since(r.start).Seconds()*r.cfg.Rate)+1, total)
		p.grow(due-n, perTick)
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

// grow adds a worker when the jobs handed out at the last tick are still
// waiting and no worker is idle: every worker is waiting for an answer (a
// slow or stalled shard), and one more connection is what the schedule
// needs. One worker per tick at most: a connection costs a connect at
// both ends, and a burst of them would be a load of its own. At high
// rates (a tick of several requests) it adds none when the pacer itself
// woke late (over two ticks' worth of requests due at once): then the
// generator is short of CPU, and more connections would only cost more of
// it (at 50k requests a second, growing then collapsed the run). At lower
// rates a connection a tick is cheap, and a late wake-up is more often
// the machine's other load than the generator's.
func (p *pacer) grow(newlyDue int64, perTick float64) {
	if len(p.jobs) == 0 || p.idle.Load() > 0 || p.workers >= p.r.cfg.MaxConnections ||
		(perTick > 1 && float64(newlyDue) > 2*perTick+1) {
		return
	}
	p.spawn()
}

// dispatch queues j for the workers; false when ctx ended first. When the
// queue is full the pacer waits, and the requests after j leave late.
func (p *pacer) dispatch(ctx context.Context, j job) bool {
	select {
	case p.jobs <- j:
		return true
	case <-ctx.Done():
		return false
	}
}

// spawn starts a worker with a connection of its own.
func (p *pacer) spawn() {
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
