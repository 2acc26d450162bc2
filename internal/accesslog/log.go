// Package accesslog writes the access log: one JSON line per proxied
// request (an HTTP/1.1 exchange, an HTTP/2 stream, a gRPC call, a
// WebSocket tunnel when it ends), made from the request's routing record
// (route.Decision) when the routing step's Done ends it. A line is built
// on the request's goroutine in a reused buffer and handed to one writer
// goroutine through a bounded queue, which the writer empties in batches
// (FlushEvery): when the queue is full the line is dropped and counted,
// so that writing never blocks a request. A log file is reopened by
// Reopen (SIGHUP, for logrotate).
package accesslog

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// DefaultQueue is how many lines may wait for the writer when
// Config.Queue is zero.
const DefaultQueue = 4096

// Config configures a Log.
type Config struct {
	// Dest is where lines go: "stdout", "stderr" or a file's path
	// (appended to, created 0644 when missing).
	Dest string
	// Sample is the share, 0 to 1, of successful requests logged;
	// requests answered with an error (4xx, 5xx, a client gone) are all
	// logged. Zero means 0 (only errors); use 1 for every request.
	Sample float64
	// KeyHash adds key_hash, the 16 lower-case hex digits of the key's
	// xxhash64; Query adds the query. Neither is logged otherwise: keys
	// are often account numbers.
	KeyHash, Query bool
	// Queue bounds the lines waiting for the writer. Zero means
	// DefaultQueue.
	Queue int
	// Registerer receives access_log_dropped_total and
	// access_log_lines_total (prefixed shard_proxy_); nil registers
	// nowhere.
	Registerer prometheus.Registerer
	// Logger reports write and reopen failures; nil means slog.Default().
	Logger *slog.Logger
	// Stdout and Stderr stand for the process's streams; nil means
	// os.Stdout and os.Stderr. (Tests pass a writer of their own.)
	Stdout, Stderr io.Writer
}

// Log is an open access log. Record is safe for concurrent use and never
// blocks; Reopen and Close are for the process's owner.
type Log struct {
	cfg     Config
	queue   chan *[]byte
	free    chan *[]byte // line buffers back from the writer, for reuse
	dropped atomic.Uint64
	second  atomic.Pointer[secondPrefix] // the time of the last lines' second, formatted
	drops   prometheus.Counter
	lines   prometheus.Counter
	log     *slog.Logger

	reopen chan chan error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	file *os.File  // the open file, when Dest is a path; the writer's own
	w    io.Writer // the destination under out
	out  *bufio.Writer
}

var _ route.Recorder = (*Log)(nil)

// Open opens the destination and starts the writer. Close stops it.
func Open(cfg Config) (*Log, error) {
	if cfg.Sample < 0 || cfg.Sample > 1 {
		return nil, fmt.Errorf("access log sample %v: want a share between 0 and 1", cfg.Sample)
	}
	if cfg.Dest == "" {
		return nil, errors.New("access log: no destination")
	}
	cfg.Queue = cmp.Or(max(cfg.Queue, 0), DefaultQueue)
	l := &Log{
		cfg:    cfg,
		queue:  make(chan *[]byte, cfg.Queue),
		free:   make(chan *[]byte, cfg.Queue+64),
		log:    cmp.Or(cfg.Logger, slog.Default()),
		reopen: make(chan chan error),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Name: "shard_proxy_access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind (the queue was full)."}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "shard_proxy_access_log_lines_total",
			Help: "Access log lines written."}),
	}
	w, err := l.open()
	if err != nil {
		return nil, err
	}
	l.w, l.out = w, bufio.NewWriterSize(w, 64<<10)
	if r := cfg.Registerer; r != nil {
		if err := r.Register(l.drops); err != nil {
			return nil, fmt.Errorf("access log metrics: %w", err)
		}
		if err := r.Register(l.lines); err != nil {
			return nil, fmt.Errorf("access log metrics: %w", err)
		}
	}
	go l.run()
	return l, nil
}

// open opens the destination: the process's stream, or the file.
func (l *Log) open() (io.Writer, error) {
	switch l.cfg.Dest {
	case "stdout":
		return cmp.Or[io.Writer](l.cfg.Stdout, os.Stdout), nil
	case "stderr":
		return cmp.Or[io.Writer](l.cfg.Stderr, os.Stderr), nil
	}
	f, err := os.OpenFile(l.cfg.Dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	l.file = f
	return f, nil
}

// Record writes d's line, unless sampling leaves a successful request
// out. It never blocks: a line the writer has no room for is dropped and
// counted.
func (l *Log) Record(d *route.Decision, end time.Time) {
	if !isError(d) && (l.cfg.Sample < 1 && rand.Float64() >= l.cfg.Sample) {
		return
	}
	var bp *[]byte
	select {
	case bp = <-l.free:
	default:
		b := make([]byte, 0, 512)
		bp = &b
	}
	*bp = l.appendLine((*bp)[:0], d, end)
	select {
	case l.queue <- bp:
	default:
		l.dropped.Add(1)
		l.drops.Inc()
		l.recycle(bp)
	}
}

// recycle keeps a line buffer for another line: a free list rather than
// a sync.Pool, which the collector empties, so that a steady load
// allocates nothing.
func (l *Log) recycle(bp *[]byte) {
	if cap(*bp) > 16<<10 {
		return // a freak line: not kept
	}
	select {
	case l.free <- bp:
	default:
	}
}

// isError: the request was answered with an error (a gRPC call's
// status included), or not at all.
func isError(d *route.Decision) bool {
	code, grpc := d.GRPCStatus()
	return d.Status >= 400 || d.Status == 0 || d.Error != "" || grpc && code != 0
}

// Dropped is how many lines were dropped since Open.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Reopen reopens a log file (after logrotate renamed it); for stdout and
// stderr it only flushes. What was queued before goes to the old file.
func (l *Log) Reopen() error {
	reply := make(chan error, 1)
	select {
	case l.reopen <- reply:
		return <-reply
	case <-l.done:
		return errors.New("access log closed")
	}
}

// Close writes what is queued, closes the file and stops the writer.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

// FlushEvery is how often a busy writer takes the queued lines and
// writes them out: one write for many lines, and a request that queues a
// line never wakes the writer while it is busy. A line reaches the
// destination within about this long.
const FlushEvery = 10 * time.Millisecond

// run is the writer. Idle, it waits for a line; busy, it wakes every
// FlushEvery, takes every queued line and writes them out with one
// flush, until a round finds none. Then it is idle again. It ends at
// Close, writing what is queued.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTimer(FlushEvery)
	tick.Stop()
	for {
		select {
		case bp := <-l.queue: // the first line after a quiet spell
			l.write(bp)
		case reply := <-l.reopen:
			reply <- l.reopenFile()
			continue
		case <-l.stop:
			l.finish()
			return
		}
		for busy := true; busy; {
			tick.Reset(FlushEvery)
			select {
			case <-tick.C:
			case reply := <-l.reopen:
				tick.Stop()
				reply <- l.reopenFile()
			case <-l.stop:
				tick.Stop()
				l.finish()
				return
			}
			busy = l.drain() > 0
			l.flush()
		}
	}
}

// drain writes every queued line to the buffer; it returns how many.
func (l *Log) drain() int {
	n := 0
	for {
		select {
		case bp := <-l.queue:
			l.write(bp)
			n++
		default:
			return n
		}
	}
}

// finish writes what is queued and closes the file.
func (l *Log) finish() {
	l.drain()
	l.flush()
	if l.file != nil {
		_ = l.file.Close()
	}
}

func (l *Log) write(bp *[]byte) {
	_, _ = l.out.Write(*bp)
	l.lines.Inc()
	l.recycle(bp)
}

func (l *Log) flush() {
	if err := l.out.Flush(); err != nil {
		l.log.Warn("access log: write failed", "err", err)
		l.out.Reset(l.w) // drop what could not be written; keep going
	}
}

// reopenFile drains the queue into the old file, then reopens the path.
func (l *Log) reopenFile() error {
	l.drain()
	l.flush()
	if l.file == nil {
		return nil
	}
	old := l.file
	w, err := l.open()
	if err != nil {
		l.log.Warn("access log: reopen failed, writing to the old file", "err", err)
		return err
	}
	_ = old.Close()
	l.w = w
	l.out.Reset(w)
	l.log.Info("access log reopened", "path", l.cfg.Dest)
	return nil
}
