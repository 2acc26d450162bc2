package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

// cmdStallShard: does one stalled shard move the other shards' latency?
// -clients keep-alive HTTP/1.1 clients send small GETs with random keys:
// -warmup unreported, then with every shard normal (the baseline phase),
// then with the shard at -stall answering after -delay (-mode slow) or
// reading requests and never answering (-mode blackhole), -duration each,
// without a break: the clients and their connections go on from phase to
// phase.
//
// The clients are split into one pool per shard: before the phases, -keys
// keys go through the proxy once and the shard that answers each (its
// X-Backend) puts it in that shard's list; every client then draws random
// keys from its own shard's list (its own seeded generator). So the load on
// the other shards is the same in both phases, and the stalled shard's
// clients wait as users would (one request at a time, no client timeout)
// without taking load away from the rest. Each client sends -rate ÷
// -clients requests a second on a fixed schedule (-rate 0: back to back).
// A request still unanswered -grace after the last phase ended is cut:
// "still waiting at the end".
func cmdStallShard(args []string) error {
	fs, c := commonFlags("stallshard", "slowshard")
	mode := fs.String("mode", "slow", "slow (answers after -delay) or blackhole (never answers)")
	stallAddr := fs.String("stall", "", "the shard to stall, host:port (it serves /_stall)")
	clients := fs.Int("clients", 200, "clients, split evenly over the shards")
	rate := fs.Float64("rate", 2000, "requests per second of all clients together (0: back to back)")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the baseline, not reported")
	dur := fs.Duration("duration", 10*time.Second, "length of each phase")
	delay := fs.Duration("delay", 5*time.Second, "-mode slow: how long the shard holds each request")
	nkeys := fs.Int("keys", 2000, "keys mapped to their shards")
	grace := fs.Duration("grace", time.Second, "how long after a phase its last requests may take")
	fs.Parse(args)
	if *mode != "slow" && *mode != "blackhole" {
		return fmt.Errorf("-mode: want slow or blackhole, not %q", *mode)
	}
	_, stalledPort, err := splitPort(*stallAddr)
	if err != nil {
		return fmt.Errorf("-stall: %v", err)
	}
	r := newResult(c)
	mon := startMonitor(c)
	ctl := func(q string) error { return shardControl(*stallAddr, q) }
	if err := ctl("mode=off"); err != nil {
		return err
	}
	defer ctl("mode=off")

	byShard, err := mapKeys(c, *nkeys)
	r.set("mode", *mode)
	r.set("clients", *clients)
	r.set("rate", *rate)
	r.set("warmup_s", warmup.Seconds())
	r.set("duration_s", dur.Seconds())
	r.set("delay_s", delay.Seconds())
	r.set("stalled_shard", stalledPort)
	if err == nil && len(byShard[stalledPort]) == 0 {
		err = fmt.Errorf("no key of %d went to the shard on port %s (shards seen: %d)", *nkeys, stalledPort, len(byShard))
	}
	if err != nil {
		r.set("err", err)
		mon.finish(r)
		r.print()
		return nil
	}
	var shards []string
	for s := range byShard {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	r.set("shards", len(shards))
	pools := make([]pool, *clients)
	for i := range pools {
		s := shards[i%len(shards)]
		pools[i] = pool{shard: s, keys: byShard[s], stalled: s == stalledPort}
	}
	q := "mode=blackhole"
	if *mode == "slow" {
		q = fmt.Sprintf("mode=slow&delay=%s", *delay)
	}
	run := &phaseRunner{c: c, pools: pools, rate: *rate, warmup: *warmup, dur: *dur, grace: *grace}
	if err := run.run(r, mon, func() error { return ctl(q) }); err != nil {
		return err
	}
	mon.finish(r)
	r.print()
	return nil
}

// shardControl sets the stall mode of the shard at addr, directly.
func shardControl(addr, query string) error {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/_stall?" + query)
	if err != nil {
		return fmt.Errorf("shard control %s: %w", query, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("shard control %s: status %d", query, resp.StatusCode)
	}
	return nil
}

func splitPort(addr string) (host, port string, err error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			if i == len(addr)-1 {
				break
			}
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("want host:port, not %q", addr)
}

// mapKeys sends n keys through the proxy once, 8 connections at a time,
// and groups them by the shard that answered (X-Backend).
func mapKeys(c *common, n int) (map[string][]string, error) {
	const workers = 8
	got := make([]string, n)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			cn, err := dial(c.addr, nil, 5*time.Second)
			if err != nil {
				errs[w] = err
				return
			}
			defer cn.Close()
			cn.SetDeadline(time.Now().Add(30 * time.Second))
			for i := w; i < n; i += workers {
				status, backend, err := cn.getShard(c.addr, key(c.seed+7, i))
				if err == nil && (status != 200 || backend == "") {
					err = fmt.Errorf("mapping key %s: status %d, X-Backend %q", key(c.seed+7, i), status, backend)
				}
				if err != nil {
					errs[w] = err
					return
				}
				got[i] = backend
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	m := map[string][]string{}
	for i, b := range got {
		m[b] = append(m[b], key(c.seed+7, i))
	}
	return m, nil
}

// getShard is get that also returns the answering shard (X-Backend).
func (c *conn) getShard(host, k string) (int, string, error) {
	if _, err := c.Write(head("GET", "/", host, k, -1)); err != nil {
		return 0, "", err
	}
	resp, err := c.readResponse("GET")
	if err != nil {
		return 0, "", err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errClosed
	}
	return resp.StatusCode, resp.Header.Get("X-Backend"), err
}

var errClosed = fmt.Errorf("proxy closed the connection")

// pool is one client's shard: the keys it draws from.
type pool struct {
	shard   string
	keys    []string
	stalled bool
}

// phaseRunner runs the clients through three phases without a break:
// warm-up (not reported), baseline, stalled. A request belongs to the phase
// it was sent in.
type phaseRunner struct {
	c      *common
	pools  []pool
	rate   float64
	warmup time.Duration
	dur    time.Duration
	grace  time.Duration
	phase  atomic.Int32 // 0 warm-up, 1 baseline, 2 stalled
	stats  [3]phaseStats
	// stalledInflight: the stalled shard's clients waiting for an answer.
	stalledInflight atomic.Int64
}

// phaseStats: one phase's requests, split into the other shards' and the
// stalled shard's.
type phaseStats struct {
	mu          sync.Mutex
	other       []time.Duration // answered 200 by their own shard
	otherSt     statuses
	otherWrong  int // answered by another shard than the key's
	stalled     []time.Duration
	stalledSt   statuses
	stalledMove int // the stalled shard's keys answered by another shard
	stalledCut  int // still unanswered at the end (cut)
}

// run runs the clients through warm-up, baseline and, after stall() has
// stalled the shard, the stalled phase; it puts each reported phase's
// figures on the line, named base_... and stall_...
func (p *phaseRunner) run(res *result, mon *monitor, stall func() error) error {
	t0 := time.Now()
	base := t0.Add(p.warmup)
	stalled := base.Add(p.dur)
	end := stalled.Add(p.dur)
	cut := end.Add(p.grace)
	var wg sync.WaitGroup
	for i := range p.pools {
		wg.Go(func() { p.client(i, t0, end, cut) })
	}
	time.Sleep(time.Until(base))
	p.phase.Store(1)
	cpu0, _ := benchline.CPUTicks(p.c.pid)
	time.Sleep(time.Until(stalled))
	cpu1, _ := benchline.CPUTicks(p.c.pid)
	hwmBase := mon.now().hwm
	err := stall()
	p.phase.Store(2)
	time.Sleep(time.Until(end))
	cpu2, _ := benchline.CPUTicks(p.c.pid)
	stuck := p.stalledInflight.Load()
	wg.Wait()
	p.put(res, "base", &p.stats[1], cpu1-cpu0, hwmBase)
	p.put(res, "stall", &p.stats[2], cpu2-cpu1, mon.now().hwm)
	res.set("stuck_clients", stuck)
	return err
}

func (p *phaseRunner) put(res *result, prefix string, st *phaseStats, ticks, hwm int64) {
	slices.Sort(st.other)
	slices.Sort(st.stalled)
	set := func(k string, v any) { res.set(prefix+"_"+k, v) }
	set("other_n", len(st.other))
	set("other_rps", float64(len(st.other))/p.dur.Seconds())
	set("other_p50_ms", percentile(st.other, 50))
	set("other_p99_ms", percentile(st.other, 99))
	set("other_p999_ms", percentile(st.other, 99.9))
	set("other_max_ms", percentile(st.other, 100))
	set("other_statuses", st.otherSt.String())
	set("other_err", st.otherSt.first)
	set("other_wrong_shard", st.otherWrong)
	set("stalled_statuses", st.stalledSt.String())
	set("stalled_err", st.stalledSt.first)
	set("stalled_answered", len(st.stalled))
	set("stalled_p50_ms", percentile(st.stalled, 50))
	set("stalled_moved", st.stalledMove)
	set("stalled_cut", st.stalledCut)
	if p.c.pid > 0 {
		set("core", float64(ticks)/clkTck/p.dur.Seconds())
	}
	set("hwm_kib", hwm)
}

// client i sends requests from its pool's keys until end, on one
// keep-alive connection (a new one after an error); a request still
// unanswered at cut is cut.
func (p *phaseRunner) client(i int, t0, end, cut time.Time) {
	pl := p.pools[i]
	rng := rand.New(rand.NewPCG(p.c.seed, uint64(i)))
	var interval time.Duration
	next := t0
	if p.rate > 0 {
		interval = time.Duration(float64(len(p.pools)) / p.rate * float64(time.Second))
		next = t0.Add(interval * time.Duration(i) / time.Duration(len(p.pools)))
	}
	var cn *conn
	defer func() {
		if cn != nil {
			cn.Close()
		}
	}()
	for next.Before(end) {
		time.Sleep(time.Until(next))
		if !time.Now().Before(end) {
			return
		}
		st := &p.stats[p.phase.Load()]
		if cn == nil {
			var err error
			if cn, err = dial(p.c.addr, nil, 5*time.Second); err != nil {
				st.record(pl, 0, "", 0, err, false)
				cn = nil
				next = time.Now().Add(10 * time.Millisecond)
				continue
			}
			cn.SetDeadline(cut)
		}
		k := pl.keys[rng.IntN(len(pl.keys))]
		if pl.stalled {
			p.stalledInflight.Add(1)
		}
		ts := time.Now()
		status, backend, err := cn.getShard(p.c.addr, k)
		d := time.Since(ts)
		if pl.stalled {
			p.stalledInflight.Add(-1)
		}
		wasCut := err != nil && !time.Now().Before(cut)
		st.record(pl, status, backend, d, err, wasCut)
		if err != nil {
			cn.Close()
			cn = nil
			if wasCut {
				return
			}
		}
		if interval > 0 {
			next = next.Add(interval)
		} else {
			next = time.Now()
		}
	}
}

func (st *phaseStats) record(pl pool, status int, backend string, d time.Duration, err error, wasCut bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if pl.stalled {
		switch {
		case wasCut:
			st.stalledCut++
		case err == nil && status == 200 && backend != pl.shard:
			st.stalledMove++
			st.stalledSt.add(status, nil)
		default:
			st.stalledSt.add(status, err)
			if err == nil {
				st.stalled = append(st.stalled, d)
			}
		}
		return
	}
	if wasCut {
		err = fmt.Errorf("still unanswered at the end of the phase")
	}
	st.otherSt.add(status, err)
	if err != nil || status != 200 {
		return
	}
	if backend != pl.shard {
		st.otherWrong++
	}
	st.other = append(st.other, d)
}

// clkTck: the kernel's clock ticks per second (/proc/PID/stat counts in
// them); run.sh passes getconf CLK_TCK, 100 on every Linux this runs on.
var clkTck = func() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("CLK_TCK"), 64); err == nil && v > 0 {
		return v
	}
	return 100
}()
