// Command grpcload is the load side of "run.sh grpc": gRPC unary calls
// through a sharding proxy, each with a random ten-digit key in the x-shard-key
// metadata, and the plain HTTP/2 test run through h2load. Every measuring
// subcommand prints one line
//
//	BENCH round=1 scenario=grpc system=haproxy calls=412345 seconds=10.000 rps=41234.5 p50_us=1480 p99_us=3900 ... errors=0
//
// like wrk's in the side-by-side runs, for run.sh to collect; "grpcload
// report" turns the collected lines into bench/results/grpc.md.
//
//	grpcload load   -addr A -callers 64 -conns 4 -warmup 2s -duration 10s -pid P
//	                           N callers sharing C client connections, closed loop
//	grpcload sanity -addr A [-h2] [-direct]
//	                           12 keys twice: every answer OK, a key always on the
//	                           same shard, keys spread over more than one
//	grpcload h2     -addr A -clients 4 -streams 16 -warmup 2s -duration 10s -pid P
//	                           h2load GETs of /accounts/<key> (keys from the same
//	                           seeded generator), its output as a BENCH line
//	grpcload otlpsink -listen A
//	                           an OTLP/HTTP receiver that reads and drops every
//	                           batch (the tracing systems export to it)
//	grpcload report -in grpc.txt
//	                           the markdown tables
//
// With -pid, the proxy's CPU time (user + system, all threads, from
// /proc/PID/stat) is read at the start and end of the measured window, and
// its VmHWM at the end: cpu_us is CPU microseconds per call, cpu_util the
// share of a core it used, hwm_kib its peak RSS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

func main() {
	benchline.Main("grpcload", "load|sanity|h2|otlpsink|report", map[string]func([]string) error{
		"otlpsink": cmdSink,
		"load":     cmdLoad,
		"sanity":   cmdSanity,
		"h2":       cmdH2,
		"report":   cmdReport,
	})
}

// cmdReport turns the BENCH lines run.sh collected (grpc.txt) into the
// markdown tables of grpc.md: per scenario, one row per system with the
// medians over rounds, the ratios to HAProxy and to the better of HAProxy
// and nginx (each taken within a round, then the median), and, with more
// than one round, every round.
func cmdReport(args []string) error {
	return benchline.Report(args, lineKeys, markdown)
}

// lineKeys: the keys every BENCH line has.
var lineKeys = []string{"system", "scenario"}

// rec is one parsed line.
type rec = benchline.Rec

// --- keys ---------------------------------------------------------------------

// keyGen draws ten-digit keys; stream i of seed s is the same sequence in
// every run, so every system sees the same keys.
type keyGen struct {
	r   *rand.Rand
	buf []byte
}

func newKeyGen(seed, stream uint64) *keyGen {
	return &keyGen{r: rand.New(rand.NewPCG(seed, stream)), buf: make([]byte, 0, 10)}
}

func (g *keyGen) next() string {
	g.buf = strconv.AppendUint(g.buf[:0], 1_000_000_000+g.r.Uint64N(9_000_000_000), 10)
	return string(g.buf)
}

// --- the result line ----------------------------------------------------------

// line is the BENCH line of one measurement.
type line struct{ benchline.Line }

func newLine(round int, scenario, system string) *line {
	l := &line{}
	l.set("round", round)
	l.set("scenario", scenario)
	l.set("system", system)
	return l
}

// set puts v on the line; durations in microseconds.
func (l *line) set(k string, v any) {
	if d, ok := v.(time.Duration); ok {
		v = d.Microseconds()
	}
	l.Set(k, v)
}

// --- the proxy's CPU and memory -------------------------------------------------

var clkTck = func() float64 {
	// getconf CLK_TCK is 100 on every Linux this runs on; run.sh passes the
	// real value in case it is not.
	if v, err := strconv.ParseFloat(os.Getenv("CLK_TCK"), 64); err == nil && v > 0 {
		return v
	}
	return 100
}()

// window measures the proxy over the measured window.
type window struct {
	pid    int
	t0     int64
	w0     time.Time
	load1  string
	ticks  int64
	wall   time.Duration
	hwmKiB int64
}

func (w *window) start() {
	w.load1 = benchline.Load1()
	if w.pid > 0 {
		w.t0, _ = benchline.CPUTicks(w.pid)
	}
	w.w0 = time.Now()
}

func (w *window) stop() {
	w.wall = time.Since(w.w0)
	if w.pid > 0 {
		t1, _ := benchline.CPUTicks(w.pid)
		w.ticks = t1 - w.t0
		w.hwmKiB = benchline.KiB(benchline.Status(w.pid), "VmHWM")
	}
}

// report adds the proxy's CPU per call and peak RSS for n calls to l.
func (w *window) report(l *line, n int64) {
	l.set("load1", w.load1)
	if w.pid <= 0 {
		return
	}
	cpu := float64(w.ticks) / clkTck
	if n > 0 {
		l.set("cpu_us", cpu*1e6/float64(n))
	}
	l.set("cpu_util", cpu/w.wall.Seconds())
	l.set("hwm_kib", w.hwmKiB)
}

// --- load -------------------------------------------------------------------------

type common struct {
	addr     string
	system   string
	scenario string
	round    int
	seed     uint64
	pid      int
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration
}

func commonFlags(name, scenario string) (*flag.FlagSet, *common) {
	c := &common{}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:18080", "the proxy (or shard) under test")
	fs.StringVar(&c.system, "system", "", "system name for the result line")
	fs.StringVar(&c.scenario, "scenario", scenario, "scenario name for the result line")
	fs.IntVar(&c.round, "round", 1, "round number for the result line")
	fs.Uint64Var(&c.seed, "seed", 42, "key sequence")
	fs.IntVar(&c.pid, "pid", 0, "the proxy's PID, whose CPU time and peak RSS are read (0: none)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "load before the measured window, not measured")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "the measured window")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "bound on one call")
	return fs, c
}

// dial opens n client connections and waits until each is ready.
func dial(addr string, n int, timeout time.Duration) ([]*grpc.ClientConn, error) {
	var conns []*grpc.ClientConn
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for range n {
		// passthrough: the address as given, no resolver in the way.
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, cc)
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				closeAll(conns)
				return nil, fmt.Errorf("connection to %s not ready within %s (state %s)", addr, timeout, s)
			}
		}
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		cc.Close()
	}
}

// callerResult is what one caller saw in the measured window.
type callerResult struct {
	h        hist
	calls    int64
	errs     map[codes.Code]int64
	firstErr error
}

// loadOpts are the flags of "grpcload load" beyond the common ones.
type loadOpts struct {
	callers, conns      int
	reqBytes, respBytes int
}

func cmdLoad(args []string) error {
	fs, c := commonFlags("load", "grpc")
	var o loadOpts
	fs.IntVar(&o.callers, "callers", 64, "concurrent callers, each one call at a time (closed loop)")
	fs.IntVar(&o.conns, "conns", 4, "client connections the callers share (1: one multiplexed client)")
	fs.IntVar(&o.reqBytes, "req-bytes", 32, "payload of each request")
	fs.IntVar(&o.respBytes, "resp-bytes", 32, "payload of each answer (ResponseSize)")
	fs.Parse(args)
	if o.callers < 1 || o.conns < 1 {
		return errors.New("-callers and -conns must be at least 1")
	}
	conns, err := dial(c.addr, o.conns, 10*time.Second)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	results, w := runCallers(c, o, conns)
	printLoadLine(c, o, mergeResults(results), w)
	return nil
}

// Phases of a load run. A call is counted when it completes in the
// measured window.
const (
	phaseWarmup int32 = iota
	phaseMeasured
	phaseDone
)

// runCallers runs o.callers closed-loop callers over conns through the
// warm-up and the measured window, and returns what each saw in the window
// and the proxy's measurements over it.
func runCallers(c *common, o loadOpts, conns []*grpc.ClientConn) ([]callerResult, window) {
	var phase atomic.Int32
	results := make([]callerResult, o.callers)
	var wg sync.WaitGroup
	for i := range o.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := testgrpc.NewTestServiceClient(conns[i%len(conns)])
			callUntilDone(&results[i], client, newKeyGen(c.seed, uint64(i)), c.timeout, o, &phase)
		}()
	}
	time.Sleep(c.warmup)
	w := window{pid: c.pid}
	w.start()
	phase.Store(phaseMeasured)
	time.Sleep(c.duration)
	phase.Store(phaseDone)
	w.stop()
	wg.Wait()
	return results, w
}

// callUntilDone is one caller: one call at a time until phase is done,
// recording into res the calls that complete in the measured window.
func callUntilDone(res *callerResult, client testgrpc.TestServiceClient, keys *keyGen,
	timeout time.Duration, o loadOpts, phase *atomic.Int32) {
	res.errs = map[codes.Code]int64{}
	req := &testgrpc.SimpleRequest{
		ResponseSize: int32(o.respBytes),
		Payload:      &testgrpc.Payload{Body: make([]byte, o.reqBytes)},
	}
	for phase.Load() < phaseDone {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-shard-key", keys.next())
		t0 := time.Now()
		_, err := client.UnaryCall(ctx, req)
		d := time.Since(t0)
		cancel()
		if phase.Load() != phaseMeasured {
			continue
		}
		if err != nil {
			res.errs[status.Code(err)]++
			if res.firstErr == nil {
				res.firstErr = err
			}
			continue
		}
		res.calls++
		res.h.record(d)
	}
}

// mergeResults adds up the callers' results; the first error is the first
// caller's that has one.
func mergeResults(results []callerResult) *callerResult {
	sum := &callerResult{errs: map[codes.Code]int64{}}
	for i := range results {
		r := &results[i]
		sum.h.merge(&r.h)
		sum.calls += r.calls
		for code, n := range r.errs {
			sum.errs[code] += n
		}
		if sum.firstErr == nil {
			sum.firstErr = r.firstErr
		}
	}
	return sum
}

// printLoadLine prints the BENCH line of a load run from the callers'
// merged result and the window.
func printLoadLine(c *common, o loadOpts, r *callerResult, w window) {
	l := newLine(c.round, c.scenario, c.system)
	l.set("calls", r.calls)
	l.set("seconds", w.wall.Seconds())
	l.set("rps", float64(r.calls)/w.wall.Seconds())
	l.setLatencies(&r.h)
	l.setCallErrors(r)
	l.set("callers", o.callers)
	l.set("conns", o.conns)
	w.report(l, r.calls)
	fmt.Println(l)
}

// setLatencies puts h's percentiles and maximum on l.
func (l *line) setLatencies(h *hist) {
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50_us", 0.50}, {"p90_us", 0.90}, {"p99_us", 0.99}, {"p999_us", 0.999}} {
		l.set(q.name, h.quantile(q.q))
	}
	l.set("max_us", time.Duration(h.max))
}

// setCallErrors puts the number of failed calls on l and, if there were
// any, their counts by status code and the first one's message.
func (l *line) setCallErrors(r *callerResult) {
	var nerr int64
	var parts []string
	for code, n := range r.errs {
		nerr += n
		parts = append(parts, fmt.Sprintf("%s:%d", code, n))
	}
	l.set("errors", nerr)
	if nerr > 0 {
		sort.Strings(parts)
		l.set("error_codes", strings.Join(parts, ","))
		l.set("first_error", oneLine(r.firstErr.Error()))
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
