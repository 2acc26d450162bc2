// Command profile serves the shard-proxy data plane in-process, exactly as
// cmd/shard-proxy wires it for --shards, so that a CPU profile and allocation
// counts can be taken while wrk drives it. run.sh's "profile" mode uses it.
//
// Signals mark the measured window, so that start-up and warm-up stay out of
// it: SIGUSR1 starts the CPU profile and snapshots the allocation counters,
// SIGTERM or SIGINT stops, writes the profiles and prints one
// "PROFILE k=v ..." line with requests served and allocations per request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/tracing"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/internal/watch/static"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	shards := flag.String("shards", "", "static shards, as shard-proxy --shards")
	listen := flag.String("listen", "127.0.0.1:18080", "data-plane listen address")
	key := flag.String("key", keys.DefaultRules, "key rules, as shard-proxy --key")
	cpuOut := flag.String("cpuprofile", "cpu.pprof", "CPU profile of the measured window")
	heapBase := flag.String("heapbase", "heap-base.pprof", "heap profile at the start of the window (pprof -base)")
	heapOut := flag.String("heapprofile", "heap.pprof", "heap profile at the end of the window")
	accessLog := flag.String("access-log", "", "write the access log of every request here, as shard-proxy --access-log (\"\": off)")
	traceRatio := flag.String("trace-ratio", "", "trace as shard-proxy --tracing otlp with OTEL_TRACES_SAMPLER_ARG=R, to an in-process OTLP/HTTP sink (\"\": off)")
	flag.Parse()

	var al *accesslog.Log
	if *accessLog != "" {
		var err error
		if al, err = accesslog.Open(accesslog.Config{Dest: *accessLog, Sample: 1}); err != nil {
			return err
		}
		defer al.Close()
	}
	var tr *tracing.Tracer
	if *traceRatio != "" {
		var err error
		if tr, err = startTracing(*traceRatio); err != nil {
			return err
		}
		defer tr.Shutdown(context.Background())
	}
	px, reg, err := serve(*shards, *listen, *key, al, tr)
	if err != nil {
		return err
	}
	start := make(chan os.Signal, 1)
	signal.Notify(start, syscall.SIGUSR1)
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	if err := measure(stop, start, reg, *cpuOut, *heapBase, *heapOut); err != nil {
		return err
	}
	ctx, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	_ = px.Shutdown(ctx)
	px.Close()
	return nil
}

// serve starts the proxy on listen, routing to the static shards by the key
// rules; reg has its metrics.
func serve(shards, listen, key string, al *accesslog.Log, tr *tracing.Tracer) (*proxy.Proxy, *prometheus.Registry, error) {
	rules, err := keys.ParseRules(key)
	if err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	cfg := proxy.Config{Keys: rules, Registerer: reg, Logger: log}
	if al != nil {
		cfg.AccessLog = al
	}
	if tr != nil {
		cfg.Tracer = tr
	}
	px, err := proxy.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	src, err := static.Parse(shards, watch.HTTP1)
	if err != nil {
		return nil, nil, err
	}
	if err := px.Apply(src.Topology()); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, err
	}
	go func() {
		if err := px.Serve(ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "profile: serving on %s, GOMAXPROCS=%d\n", ln.Addr(), runtime.GOMAXPROCS(0))
	return px, reg, nil
}

// measure profiles the window from a signal on start to the end of stop:
// the heap profiles at both ends, the CPU profile in between, and the
// PROFILE line on stdout.
func measure(stop context.Context, start <-chan os.Signal, reg prometheus.Gatherer, cpuOut, heapBase, heapOut string) error {
	select {
	case <-start:
	case <-stop.Done():
		return fmt.Errorf("stopped before the measured window began (send SIGUSR1 first)")
	}
	if err := writeHeap(heapBase); err != nil {
		return err
	}
	cpu, err := os.Create(cpuOut)
	if err != nil {
		return err
	}
	// The proxy's own requests_total is the exact denominator.
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n0, t0, cpu0 := requestsTotal(reg), time.Now(), cpuTime()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return err
	}

	<-stop.Done()
	pprof.StopCPUProfile()
	elapsed, cpuUsed := time.Since(t0), cpuTime()-cpu0
	n := requestsTotal(reg) - n0
	runtime.ReadMemStats(&m1)
	if err := cpu.Close(); err != nil {
		return err
	}
	if err := writeHeap(heapOut); err != nil {
		return err
	}
	printWindow(n, elapsed, &m0, &m1)
	if n > 0 { // the process's CPU per request: what a shared machine does not skew as much as req/s
		fmt.Printf("CPU cpu_us_per_req=%.2f\n", float64(cpuUsed.Microseconds())/float64(n))
	}
	return nil
}

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// printWindow writes the PROFILE line of n requests in elapsed, between
// the memory statistics m0 and m1.
func printWindow(n uint64, elapsed time.Duration, m0, m1 *runtime.MemStats) {
	perReq := func(v uint64) float64 {
		if n == 0 {
			return 0
		}
		return float64(v) / float64(n)
	}
	fmt.Printf("PROFILE requests=%d seconds=%.3f rps=%.1f allocs_per_req=%.3f bytes_per_req=%.1f gc_cycles=%d gc_cpu_fraction=%.4f heap_inuse_mib=%.1f sys_mib=%.1f\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(),
		perReq(m1.Mallocs-m0.Mallocs), perReq(m1.TotalAlloc-m0.TotalAlloc),
		m1.NumGC-m0.NumGC, m1.GCCPUFraction, float64(m1.HeapInuse)/(1<<20), float64(m1.Sys)/(1<<20))
}

// writeHeap writes a heap profile; its alloc_* samples count since start, so
// the window is the difference to the base profile.
func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// requestsTotal sums shard_proxy_requests_total over every shard and code.
func requestsTotal(g prometheus.Gatherer) uint64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "shard_proxy_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return uint64(n)
}
