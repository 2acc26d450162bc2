// Command memload is the load side of "run.sh memory": the streaming and
// memory tests of one proxy, one subcommand per test. Each prints one line
//
//	BENCH system=haproxy test=download bytes=67108864 ... hwm_kib=14200
//
// for run.sh to collect; "memload report" turns the collected lines into
// bench/results/memory.md. Values that may hold spaces are quoted (Go
// syntax). Failures of the proxy under test (errors, bad statuses, a proxy
// that dies) are results, printed on the line; memload itself exits non-zero
// only when it cannot run at all.
//
// Memory is read from /proc/PID/status of the proxy (-pid): VmHWM is the
// peak, VmRSS the current resident set. A guard (-guard-mib) kills the proxy
// with SIGKILL if its RSS passes the limit, so that a proxy that buffers
// without bound cannot take the machine down; the line then says
// guard_killed=1.
//
//	memload stream     -path '/stream?chunks=10&gap=200ms'   time to first and last body byte
//	memload download   -bytes N -clients C [-after 5s]        throughput, peak RSS, RSS after
//	memload upload     -bytes N                               POST with Content-Length
//	memload slowupload -clients 500 -bytes N -chunk 64KiB -gap 100ms
//	                                                          slow uploaders + a fast GET client
//	memload idle       -conns 20000 -procs 4                  idle keep-alive connections
//	memload idle -proto h2 -test h2idle -conns 5000           idle h2c connections (one stream each)
//	memload hugecl                                            shard declares 64 GiB, stalls, closes
//	memload hung       -clients 5000 -hold 5s                 requests held by a shard: peak RSS per request
//	memload h2stall    -conns 50 -streams 100 -bytes 1MiB     HTTP/2 clients at window 0: peak RSS, RSS after, a fast client
//	memload stallshard -mode slow|blackhole -stall ADDR       one shard stalled: the other shards' latency
//	memload report     -in memory.txt                         the markdown tables
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

func main() {
	benchline.Main("memload", "stream|download|upload|slowupload|idle|hugecl|hung|h2stall|stallshard|report", map[string]func([]string) error{
		"stream":      cmdStream,
		"download":    cmdDownload,
		"upload":      cmdUpload,
		"slowupload":  cmdSlowUpload,
		"idle":        cmdIdle,
		"idle-worker": cmdIdleWorker,
		"hugecl":      cmdHugeCL,
		"hung":        cmdHung,
		"h2stall":     cmdH2Stall,
		"stallshard":  cmdStallShard,
		"report":      cmdReport,
	})
}

// cmdReport turns the BENCH lines that run.sh collected into the markdown
// tables of bench/results/memory.md: one table per test, one row per
// system, ratios against HAProxy's row of the same run.
func cmdReport(args []string) error {
	return benchline.Report(args, lineKeys, markdown)
}

// lineKeys: the keys every BENCH line has.
var lineKeys = []string{"system", "test"}

// rec is one parsed line.
type rec = benchline.Rec

// --- common flags and the result line ------------------------------------------

type common struct {
	addr     string
	pid      int
	guardMiB int
	system   string
	test     string
	seed     uint64
	timeout  time.Duration
}

func commonFlags(name, test string) (*flag.FlagSet, *common) {
	c := &common{}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:18080", "the proxy under test")
	fs.IntVar(&c.pid, "pid", 0, "the proxy's PID, whose memory is read (0: none)")
	fs.IntVar(&c.guardMiB, "guard-mib", 8192, "SIGKILL the proxy if its RSS passes this (0: no guard)")
	fs.StringVar(&c.system, "system", "", "system name for the result line")
	fs.StringVar(&c.test, "test", test, "test name for the result line")
	fs.Uint64Var(&c.seed, "seed", 42, "key sequence")
	fs.DurationVar(&c.timeout, "timeout", 120*time.Second, "bound on the whole test")
	return fs, c
}

// result is one output line.
type result struct{ benchline.Line }

func newResult(c *common) *result {
	r := &result{}
	if c.system != "" {
		r.set("system", c.system)
	}
	r.set("test", c.test)
	return r
}

// set puts v on the line: durations in milliseconds, errors as short
// names, nil (no error) left off.
func (r *result) set(k string, v any) {
	switch x := v.(type) {
	case time.Duration:
		v = x.Seconds() * 1000
	case error:
		v = short(x)
	}
	r.Set(k, v)
}

func (r *result) print() { fmt.Println(r.String()) }

// short names an error without the addresses and ports that differ per run:
// "read: connection reset by peer", "unexpected EOF", "timeout".
func short(err error) string {
	if err == nil {
		return ""
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		inner := op.Err
		var se *os.SyscallError
		if errors.As(inner, &se) {
			inner = se.Err
		}
		return op.Op + ": " + inner.Error()
	}
	return err.Error()
}

// --- the proxy's memory --------------------------------------------------------

type procStat struct {
	hwm, rss int64 // KiB
	// anon is the private (anonymous) part of rss: what the process
	// allocated, without the pages of its binary and libraries that it
	// maps (RssFile), which the kernel shares and can drop. anonPeak is the
	// largest anon sampled (every 20 ms: the kernel keeps no peak of it).
	anon, anonPeak int64
	alive          bool
}

func readProc(pid int) procStat {
	st := benchline.Status(pid)
	if st == nil {
		return procStat{}
	}
	s := procStat{hwm: benchline.KiB(st, "VmHWM"), rss: benchline.KiB(st, "VmRSS"), anon: benchline.KiB(st, "RssAnon")}
	// A zombie (the proxy died, run.sh has not reaped it yet) has no memory
	// lines.
	if f := st["State"]; len(f) > 0 {
		s.alive = f[0] != "Z" && f[0] != "X"
	}
	s.alive = s.alive && s.rss > 0
	return s
}

func countFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(es)
}

// monitor polls the proxy's memory while a test runs: it remembers the last
// reading of a live process (VmHWM is gone once it dies) and enforces the
// guard.
type monitor struct {
	pid      int
	guardKiB int64
	mu       sync.Mutex
	last     procStat
	killed   bool
	stopped  chan struct{}
	done     chan struct{}
}

func startMonitor(c *common) *monitor {
	m := &monitor{pid: c.pid, guardKiB: int64(c.guardMiB) << 10, stopped: make(chan struct{}), done: make(chan struct{})}
	if m.pid <= 0 {
		close(m.done)
		return m
	}
	m.now()
	go func() {
		defer close(m.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stopped:
				return
			case <-t.C:
			}
			s := m.now()
			if !s.alive {
				continue
			}
			if m.guardKiB > 0 && s.rss > m.guardKiB {
				fmt.Fprintf(os.Stderr, "memload: proxy RSS %d MiB passed the guard of %d MiB: killing PID %d\n", s.rss>>10, m.guardKiB>>10, m.pid)
				syscall.Kill(m.pid, syscall.SIGKILL)
				m.mu.Lock()
				m.killed = true
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// now reads the proxy's memory; of a dead proxy it returns the last
// reading with alive false.
func (m *monitor) now() procStat {
	if m.pid <= 0 {
		return procStat{}
	}
	s := readProc(m.pid)
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.alive {
		s.hwm = max(s.hwm, m.last.hwm)
		s.anonPeak = max(s.anon, m.last.anonPeak)
		m.last = s
		return s
	}
	d := m.last
	d.alive = false
	return d
}

func (m *monitor) stop() {
	select {
	case <-m.stopped:
	default:
		close(m.stopped)
	}
	<-m.done
}

// finish stops the monitor and puts the peak and liveness on r.
func (m *monitor) finish(r *result) procStat {
	s := m.now()
	m.stop()
	if m.pid <= 0 {
		return s
	}
	r.set("hwm_kib", s.hwm)
	r.set("rss_kib", s.rss)
	r.set("anon_peak_kib", s.anonPeak)
	r.set("alive", b2i(s.alive))
	m.mu.Lock()
	r.set("guard_killed", b2i(m.killed))
	m.mu.Unlock()
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// --- HTTP over raw connections --------------------------------------------------
//
// Requests are written by hand, so that a body can be paced or cut exactly as
// a test wants; responses are parsed with net/http (chunked, Content-Length,
// until close).

type conn struct {
	net.Conn
	br *bufio.Reader
}

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) lets the kernel choose the
// source port at connect time, per destination, when a source address is
// bound: many source addresses then do not share one port range.
const ipBindAddressNoPort = 24

func dial(addr string, src net.IP, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, br: bufio.NewReaderSize(c, 32<<10)}, nil
}

// head is a request head routed by key as the header scenario routes:
// X-Shard-Key. contentLength < 0 sends none.
func head(method, target, host, key string, contentLength int64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nX-Shard-Key: %s\r\nUser-Agent: memload\r\n", method, target, host, key)
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

func (c *conn) readResponse(method string) (*http.Response, error) {
	return http.ReadResponse(c.br, &http.Request{Method: method})
}

// get does one small GET on c and reads the whole answer, leaving c ready
// for the next request.
func (c *conn) get(host, target, key string) (int, error) {
	if _, err := c.Write(head("GET", target, host, key, -1)); err != nil {
		return 0, err
	}
	resp, err := c.readResponse("GET")
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errors.New("proxy closed the connection")
	}
	return resp.StatusCode, err
}

// key i: a ten-digit key, the same for the same seed and i in every run.
func key(seed uint64, i int) string {
	z := seed + uint64(i)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return strconv.FormatUint(1000000000+z%1000000000, 10)
}

// --- small statistics -----------------------------------------------------------

// statuses counts answers: "200:49 502:1 error:1".
type statuses struct {
	mu    sync.Mutex
	count map[string]int
	first error
}

func (s *statuses) add(status int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	k := strconv.Itoa(status)
	if err != nil {
		k = "error"
		if status != 0 {
			k = strconv.Itoa(status) + "+error"
		}
		if s.first == nil {
			s.first = err
		}
	}
	s.count[k]++
}

func (s *statuses) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for k := range s.count {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for i, k := range ks {
		ks[i] = fmt.Sprintf("%s:%d", k, s.count[k])
	}
	return strings.Join(ks, ",")
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// byteSize parses 4194304, 64KiB, 64MiB, 64GiB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want bytes such as 4194304 or 64MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

func sizeFlag(fs *flag.FlagSet, name string, def int64, usage string) *int64 {
	v := byteSize(def)
	fs.Var(&v, name, usage)
	return (*int64)(&v)
}
