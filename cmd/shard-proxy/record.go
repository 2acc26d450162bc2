package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/tracing"
)

// recordOptions are the flags of the access log and tracing (DESIGN.md
// section 15).
type recordOptions struct {
	accessLog string
	sample    float64
	keyHash   bool
	query     bool
	tracing   string
	getenv    func(string) string // the OTEL_* variables
}

// shareValue is a flag that takes a share from 0 to 1.
type shareValue struct{ p *float64 }

func (v shareValue) String() string {
	if v.p == nil {
		return "1"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v shareValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 1 || f != f {
		return errors.New("want a share from 0 to 1, such as 0.1")
	}
	*v.p = f
	return nil
}

func recordFlags(fs *flag.FlagSet, o *recordOptions) {
	fs.StringVar(&o.accessLog, "access-log", "", "one JSON line per request: stdout, stderr or a file's path (reopened on SIGHUP); \"\": off")
	o.sample = 1
	fs.Var(shareValue{&o.sample}, "access-log-sample", "share of successful requests logged, 0 to 1 (errors are always logged)")
	fs.BoolVar(&o.keyHash, "access-log-key-hash", false, "add key_hash (xxhash64 of the key) to access log lines; the key itself is never logged")
	fs.BoolVar(&o.query, "access-log-query", false, "add the query string to access log lines")
	fs.StringVar(&o.tracing, "tracing", "", "otlp: export OpenTelemetry spans, configured by the OTEL_* variables; \"\": off")
}

// validate checks the combinations; name is how errors refer to a flag.
func (o *recordOptions) validate(name func(string) string) error {
	if o.accessLog == "" && (o.keyHash || o.query || o.sample != 1) {
		return fmt.Errorf("%s, %s and %s go with --access-log", name("access-log-sample"),
			name("access-log-key-hash"), name("access-log-query"))
	}
	if o.tracing != "" && o.tracing != "otlp" {
		return fmt.Errorf("%s %q: want otlp, or nothing for no tracing", name("tracing"), o.tracing)
	}
	return nil
}

// recorders are the access log and the tracer, with the SIGHUP handler
// that reopens the log; nil when neither is on.
type recorders struct {
	log    *accesslog.Log
	tracer *tracing.Tracer
	logs   *slog.Logger

	hup  chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup
}

// openRecorders opens what the options ask for; nothing runs yet.
func openRecorders(o *recordOptions, reg prometheus.Registerer, log *slog.Logger) (*recorders, error) {
	r := &recorders{logs: log}
	if o.accessLog != "" {
		l, err := accesslog.Open(accesslog.Config{Dest: o.accessLog, Sample: o.sample, KeyHash: o.keyHash,
			Query: o.query, Registerer: reg, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--access-log: %w", err)
		}
		r.log = l
	}
	if o.tracing == "otlp" {
		t, err := tracing.New(context.Background(), tracing.Config{Getenv: o.getenv, Logger: log})
		if err != nil {
			r.close(context.Background())
			return nil, fmt.Errorf("--tracing: %w", err)
		}
		r.tracer = t
	}
	return r, nil
}

// accessLog is the Recorder for proxy.Config (nil when off: an interface
// holding a nil pointer would not be).
func (r *recorders) accessLog() route.Recorder {
	if r.log == nil {
		return nil
	}
	return r.log
}

// tracerOf is the Tracer for proxy.Config; nil when tracing is off.
func (r *recorders) tracerOf() route.Tracer {
	if r.tracer == nil {
		return nil
	}
	return r.tracer
}

// provider is the tracer provider for the admin plane's broadcasts; nil
// when tracing is off.
func (r *recorders) provider() trace.TracerProvider {
	if r.tracer == nil {
		return nil
	}
	return r.tracer.Provider()
}

// start reopens the access log file on every SIGHUP, until close.
func (r *recorders) start() {
	if r.log == nil {
		return
	}
	r.hup, r.done = make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(r.hup, syscall.SIGHUP)
	r.wg.Go(func() {
		for {
			select {
			case <-r.done:
				return
			case <-r.hup:
				if err := r.log.Reopen(); err != nil {
					r.logs.Warn("access log: reopen on SIGHUP failed", "err", err)
				}
			}
		}
	})
}

// close stops the SIGHUP handler and writes out what is queued, within
// ctx.
func (r *recorders) close(ctx context.Context) {
	if r.hup != nil {
		signal.Stop(r.hup)
		close(r.done)
		r.wg.Wait()
		r.hup = nil
	}
	if r.log != nil {
		_ = r.log.Close()
	}
	if r.tracer != nil { // the spans still buffered are exported
		if err := r.tracer.Shutdown(ctx); err != nil {
			r.logs.Warn("tracing: spans not exported at shutdown", "err", err)
		}
	}
}
