package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/internal/load"
)

const loadUsage = `usage: shard-proxy load [flags] URL
  URL and -H values may hold {key}, e.g. http://127.0.0.1:8080/accounts/{key}
  --rate R (open loop, R requests a second) or --concurrency C (closed loop)
  --keys uniform:N | zipf:S:N (S > 1) | seq:N | file:PATH
  -o text|json, --report FILE.html; Ctrl-C prints the report so far`

// headerList is a repeatable -H flag.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// loadOptions are the flags of shard-proxy load.
type loadOptions struct {
	keys        string
	seed        uint64
	rate        float64
	concurrency int
	duration    time.Duration
	method      string
	body        string
	headers     headerList
	http2       bool
	output      string
	report      string
	timeout     time.Duration
	conns       int
	maxConns    int
	quiet       bool
	direct      string
	set         map[string]bool
	via         string
}

func loadFlags(o *loadOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.keys, "keys", "uniform:100000", "key source: uniform:N, zipf:S:N (S > 1), seq:N or file:PATH")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of uniform and zipf keys (default: random, printed)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: requests a second, on a fixed schedule")
	fs.IntVar(&o.concurrency, "concurrency", 0, "closed loop: requests in flight (default 16 without --rate)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long requests are sent")
	fs.StringVar(&o.method, "X", "GET", "request method")
	fs.StringVar(&o.body, "d", "", "request body, may hold {key}; @FILE reads it from FILE")
	fs.Var(&o.headers, "H", "request header 'Name: value', may hold {key}; repeatable")
	fs.BoolVar(&o.http2, "http2", false, "HTTP/2 with prior knowledge (h2c), all requests over one connection")
	fs.StringVar(&o.output, "o", "text", "report format: text or json")
	fs.StringVar(&o.report, "report", "", "also write the report as a self-contained HTML page to `FILE`")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each request")
	fs.IntVar(&o.conns, "connections", 16, "open loop: connections to start with (more are opened when none is idle)")
	fs.IntVar(&o.maxConns, "max-connections", 10000, "open loop: at most this many connections; past it requests leave late")
	fs.BoolVar(&o.quiet, "q", false, "no progress line")
	fs.StringVar(&o.direct, "direct", "", "send each request straight to its owner pod through the Go client, which follows the proxy at admin `URL` (the ceiling without the proxy); admin token from env SHARD_PROXY_ADMIN_TOKEN")
	return fs
}

func cmdLoad(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o := loadOptions{set: map[string]bool{}}
	fs := loadFlags(&o)
	pos, err := parseClient(fs, args, func(string) string { return "" })
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, loadUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err == nil && len(pos) != 1 {
		err = fmt.Errorf("want one URL, got %d arguments", len(pos))
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	var cfg load.Config
	var target *load.Target
	if err == nil {
		target, cfg, err = o.config(pos[0], stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shard-proxy load: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.direct != "" {
		closeClient, err := o.useDirect(ctx, &cfg, target, getenv)
		if err != nil {
			fmt.Fprintf(stderr, "shard-proxy load: --direct %s: %v\n", o.direct, err)
			return 1
		}
		defer closeClient()
	} else if err := load.CheckReachable(target.Addr, 3*time.Second); err != nil {
		fmt.Fprintf(stderr, "shard-proxy load: %v (is the URL %s right, and is something listening there?)\n", err, target.URL)
		return 1
	}
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shard-proxy load: %v\n", err)
		return 1
	}
	rep.Method, rep.Target = target.Method, target.URL
	code := o.write(rep, stdout, stderr)
	if code == 0 && rep.Interrupted {
		code = 130 // as a shell reports a command ended by Ctrl-C
	}
	return code
}

// config turns the flags into a run.
func (o *loadOptions) config(rawURL string, stderr io.Writer) (*load.Target, load.Config, error) {
	var cfg load.Config
	if o.output != "text" && o.output != "json" {
		return nil, cfg, fmt.Errorf("-o %q: want text or json", o.output)
	}
	if err := o.mode(&cfg); err != nil {
		return nil, cfg, err
	}
	if o.duration <= 0 || o.timeout <= 0 {
		return nil, cfg, fmt.Errorf("--duration %v, --timeout %v: want positive durations such as 10s", o.duration, o.timeout)
	}
	body := o.body
	if strings.HasPrefix(body, "@") {
		raw, err := os.ReadFile(body[1:])
		if err != nil {
			return nil, cfg, fmt.Errorf("-d %s: %w", body, err)
		}
		body = string(raw)
	}
	target, err := load.NewTarget(rawURL, o.method, o.headers, body)
	if err != nil {
		return nil, cfg, err
	}
	if !o.set["seed"] {
		o.seed = rand.Uint64()
	}
	keys, err := load.ParseKeys(o.keys, o.seed)
	if err != nil {
		return nil, cfg, err
	}
	if !target.KeyInRequest() {
		fmt.Fprintf(stderr, "shard-proxy load: warning: no {key} in the URL, -H or -d: every request is the same\n")
	}
	sender, via, err := load.NewSender(target, load.SenderOptions{HTTP2: o.http2, Timeout: o.timeout, MaxConns: o.maxConns})
	if err != nil {
		return nil, cfg, err
	}
	cfg.Sender, cfg.Keys, cfg.Duration = sender, keys, o.duration
	cfg.Connections, cfg.MaxConnections = o.conns, o.maxConns
	if o.http2 {
		// One HTTP/2 connection carries every stream; workers are streams.
		cfg.Connections = min(o.conns, 100)
	}
	if o.direct != "" {
		via = "direct" // useDirect replaces the sender
	}
	o.via = via
	if !o.quiet {
		fmt.Fprintf(stderr, "shard-proxy load: %s %s via %s, keys %s (seed %d)\n", target.Method, rawURL, via, keys, o.seed)
		cfg.Progress = func(p load.Progress) { writeProgress(stderr, p) }
	}
	return target, cfg, nil
}

// useDirect makes cfg send through the public Go client following the
// proxy at --direct: each request goes straight to its key's owner pod.
// The client is told each key, so the URL's host only needs to name the
// service (the proxy's own address is fine).
func (o *loadOptions) useDirect(ctx context.Context, cfg *load.Config, target *load.Target, getenv func(string) string) (func(), error) {
	if o.http2 || target.Scheme != "http" {
		return nil, errors.New("want an http:// URL without --http2 (the client speaks to each pod as the proxy would)")
	}
	c, err := client.New(ctx, o.direct, client.Config{Token: strings.TrimSpace(getenv("SHARD_PROXY_ADMIN_TOKEN")), Timeout: 4 * time.Second})
	if err != nil {
		return nil, err
	}
	cfg.Sender = load.NewDirectSender(target, c, func(ctx context.Context, key []byte) context.Context {
		return client.WithKey(ctx, string(key))
	}, o.timeout)
	o.via = "direct"
	return c.Close, nil
}

// mode checks --rate and --concurrency: one of them, each positive.
func (o *loadOptions) mode(cfg *load.Config) error {
	switch {
	case o.set["rate"] && o.set["concurrency"]:
		return errors.New("--rate and --concurrency: want one, --rate R for an open loop or --concurrency C for a closed one")
	case o.set["rate"] && !(o.rate > 0 && o.rate <= 1e8):
		return fmt.Errorf("--rate %s: want a rate above 0 (requests a second, at most 1e8), e.g. --rate 1000", strconv.FormatFloat(o.rate, 'g', -1, 64))
	case o.set["concurrency"] && (o.concurrency < 1 || o.concurrency > 100000):
		return fmt.Errorf("--concurrency %d: want a whole number from 1 to 100000", o.concurrency)
	case o.set["connections"] && o.conns < 1, o.set["max-connections"] && o.maxConns < 1:
		return fmt.Errorf("--connections %d, --max-connections %d: want at least 1", o.conns, o.maxConns)
	case o.rate > 0:
		cfg.Rate = o.rate
	case o.concurrency > 0:
		cfg.Concurrency = o.concurrency
	default:
		cfg.Concurrency = 16
	}
	return nil
}

func writeProgress(w io.Writer, p load.Progress) {
	fmt.Fprintf(w, "[%5.1fs] sent %d, done %d, %d/s, p50 %.3fms p99 %.3fms, errors %d, late %d, in flight %d, conns %d\n",
		p.Elapsed.Seconds(), p.Sent, p.Done, p.Interval.N, p.Interval.P50, p.Interval.P99, p.Errors, p.Late, p.InFlight, p.Conns)
}

// write prints the report and writes the HTML page; the exit status is 1
// when a write fails.
func (o *loadOptions) write(rep *load.Report, stdout, stderr io.Writer) int {
	rep.Via = o.via
	var err error
	if o.output == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err == nil && o.report != "" {
		err = writeHTMLReport(o.report, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shard-proxy load: writing the report: %v\n", err)
		return 1
	}
	return 0
}

// writeHTMLReport writes the page to path through a temporary file, so a
// failed write leaves no half page.
func writeHTMLReport(path string, rep *load.Report) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".load-report-*.html")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := rep.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
