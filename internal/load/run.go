// Package load is shard-proxy's load generator (DESIGN.md section 17): it
// sends requests whose URL, headers or body carry keys from a key source,
// on a fixed schedule (open loop) or from a fixed number of workers
// (closed loop), and reports latency overall and per shard, the shard
// being the one each answer names in its X-Shard field.
//
// In an open-loop run each request has a due time on the schedule, and
// its latency is measured from that due time, not from when it was sent:
// a server that stalls shows as latency, not as fewer requests
// (coordinated omission). A request that leaves late is still sent, and
// the report counts how late.
package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run. Sender, Keys and either Rate or Concurrency are
// required; the zero value of every other field has the default it
// documents.
type Config struct {
	// Sender makes the connections.
	Sender Sender
	// Keys draws the key of each request.
	Keys KeySource
	// Rate, when above zero, makes an open-loop run of Rate requests a
	// second.
	Rate float64
	// Concurrency, for a closed-loop run (Rate 0), is the number of
	// workers, each sending its next request when its last is answered.
	Concurrency int
	// Duration is how long requests are sent; default 10s. The run then
	// waits for the answers in flight.
	Duration time.Duration
	// Connections is the number of workers (each with its connection) an
	// open-loop run starts with; default 16. A request due when no worker
	// is idle gets a new one, up to MaxConnections (default 10000); past
	// that, requests leave late.
	Connections, MaxConnections int
	// LateAfter is the lateness past which an open-loop send counts as
	// late; default 1ms.
	LateAfter time.Duration
	// Interval is the period of the latency-over-time points and of
	// Progress; default 1s.
	Interval time.Duration
	// Progress, if set, is called every Interval from the run's own
	// goroutine.
	Progress func(Progress)
}

// Progress is the state of a run at one Interval.
type Progress struct {
	Elapsed  time.Duration
	Sent     int64 // requests sent (open loop: dispatched to a worker)
	Done     int64 // answers and errors
	Errors   int64
	Late     int64 // open loop: sends later than LateAfter
	InFlight int64
	Conns    int64
	// Interval is the last interval's overall point.
	Interval Point
}

func (c *Config) defaults() error {
	if c.Sender == nil || c.Keys == nil {
		return errors.New("load: Config needs a Sender and Keys")
	}
	if c.Rate < 0 || (c.Rate == 0 && c.Concurrency <= 0) {
		return errors.New("load: Config needs Rate > 0 or Concurrency > 0")
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Connections <= 0 {
		c.Connections = 16
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	c.Connections = min(c.Connections, c.MaxConnections)
	if c.LateAfter <= 0 {
		c.LateAfter = time.Millisecond
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	return nil
}

// run is the state of one Run.
type run struct {
	cfg   Config
	rec   *recorder
	start time.Time
	cpu0  time.Duration // processCPU at the start

	sent, done, errs, inFlight atomic.Int64

	mu     sync.Mutex // guards conns and warmed
	conns  []Conn
	warmed []Conn // connected by warm, not yet given to a worker
	wg     sync.WaitGroup
}

// Run sends the load cfg describes until cfg.Duration has passed or ctx is
// cancelled, then returns the report. When ctx is cancelled the requests
// in flight are interrupted and the report holds what was measured until
// then (Report.Interrupted). The report's Target and Method are left for
// the caller to fill.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	if cfg.Rate > 0 {
		r.warm(ctx, cfg.Connections)
	} else {
		r.warm(ctx, cfg.Concurrency)
	}
	r.start, r.cpu0 = time.Now(), processCPU()
	r.rec = newRecorder(r.start, cfg.Keys, cfg.LateAfter)
	sendCtx, stopSending := context.WithTimeout(ctx, cfg.Duration)
	defer stopSending()

	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go r.progress(stopProgress, progressDone)

	var err error
	if cfg.Rate > 0 {
		// Not sendCtx: a pacer that fell behind still sends every
		// request the schedule holds (late, and counted so).
		err = r.openLoop(ctx)
	} else {
		r.closedLoop(sendCtx)
	}
	sendEnd := time.Now()
	r.finish(ctx)
	close(stopProgress)
	<-progressDone
	if err != nil {
		return nil, err
	}
	return r.report(ctx.Err() != nil, sendEnd), nil
}

// finish waits for the workers: until the answers in flight are in, or
// until ctx is cancelled, when it interrupts them.
func (r *run) finish(ctx context.Context) {
	idle := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
		r.interruptAll()
		<-idle
	}
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.cfg.Sender.Close()
}

func (r *run) interruptAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Interrupt()
	}
}

// newConn makes a worker's Conn and keeps it for interrupting and closing.
func (r *run) newConn() Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.warmed); n > 0 {
		c := r.warmed[n-1]
		r.warmed = r.warmed[:n-1]
		return c
	}
	c := r.cfg.Sender.NewConn()
	r.conns = append(r.conns, c)
	return c
}

// warmer is a Conn that can connect ahead of its first request.
type warmer interface {
	warm() error
}

// warm makes the run's first n Conns and connects them, all at once,
// before the clock starts: the first requests would otherwise wait for
// connects and leave late. A failed connect is left for the first
// request to meet (and the report to count).
func (r *run) warm(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for range n {
		c := r.cfg.Sender.NewConn()
		r.conns = append(r.conns, c)
		r.warmed = append(r.warmed, c)
		if w, ok := c.(warmer); ok && ctx.Err() == nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = w.warm()
			}()
		}
	}
	wg.Wait()
}

func (r *run) connCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.conns))
}

// progress closes an interval every cfg.Interval until stop is closed,
// then closes the last one.
func (r *run) progress(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			r.rec.sample(time.Now())
			return
		case <-t.C:
			// Now, not the tick's time: the figures are read now, and the
			// goroutine may have run late.
			now := time.Now()
			p := r.rec.sample(now)
			if r.cfg.Progress != nil {
				r.cfg.Progress(r.snapshot(p))
			}
		}
	}
}

func (r *run) snapshot(p Point) Progress {
	r.rec.mu.Lock()
	late := r.rec.nLate
	r.rec.mu.Unlock()
	pr := Progress{Sent: r.sent.Load(), Done: r.done.Load(), Errors: r.errs.Load(),
		Late: late, InFlight: r.inFlight.Load(), Conns: r.connCount(), Interval: p}
	// The time after the counts: nothing sent is ahead of its Elapsed.
	pr.Elapsed = time.Since(r.start)
	return pr
}

// do sends one request on c and records its outcome; latency counts from
// since (the due time in an open loop, the send in a closed one).
func (r *run) do(c Conn, o *outcome, keyBuf []byte, a *Answer, since time.Time) []byte {
	keyBuf = r.cfg.Keys.Append(keyBuf[:0], o.key)
	r.inFlight.Add(1)
	err := c.Do(keyBuf, a)
	o.latency = time.Since(since)
	r.inFlight.Add(-1)
	o.status, o.errKind, o.shard = 0, "", a.Shard
	if err != nil {
		if errors.Is(err, errInterrupted) {
			return keyBuf // cut short by Ctrl-C: not an outcome
		}
		// No answer, so no X-Shard: the error counts as unrouted.
		o.errKind, o.shard = errorKind(err), nil
		r.errs.Add(1)
	} else {
		o.status = a.Status
	}
	r.done.Add(1)
	r.rec.record(o)
	return keyBuf
}

// closedLoop runs cfg.Concurrency workers until ctx ends. The keys come
// from one source under a lock, so a seed gives the same sequence.
func (r *run) closedLoop(ctx context.Context) {
	var keyMu sync.Mutex
	for range r.cfg.Concurrency {
		c := r.newConn()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			var (
				o   outcome
				a   Answer
				buf []byte
			)
			for ctx.Err() == nil {
				keyMu.Lock()
				o.key = r.cfg.Keys.Next()
				keyMu.Unlock()
				r.sent.Add(1)
				buf = r.do(c, &o, buf, &a, time.Now())
			}
		}()
	}
	<-ctx.Done()
}

// errRate is the error of a rate too high to schedule.
var errRate = fmt.Errorf("load: the rate must be at most %d requests a second", maxRate)

// maxRate bounds Rate: one request per nanosecond is beyond any generator.
const maxRate = 100_000_000
