package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// cmdH2 runs h2load against the system: plain HTTP/2 (h2c) GETs of
// /accounts/<key>, the keys drawn from the seeded generator into a URI file
// that h2load cycles through. A warm-up run first, then the measured run
// with --log-file, whose per-request times give the percentiles (h2load
// prints only min, max, mean and sd). h2load inherits this process's CPU
// affinity and priority.
func cmdH2(args []string) error {
	fs, c := commonFlags("h2", "h2")
	var o h2Opts
	fs.StringVar(&o.h2load, "h2load", "h2load", "the h2load binary")
	fs.IntVar(&o.clients, "clients", 4, "h2load connections (-c)")
	fs.IntVar(&o.streams, "streams", 16, "concurrent streams per connection (-m)")
	fs.IntVar(&o.keys, "keys", 4096, "distinct keys in the URI file")
	fs.Parse(args)

	dir, err := os.MkdirTemp("", "grpcload-h2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.uris = filepath.Join(dir, "uris")
	if err := writeURIs(o.uris, c.addr, c.seed, o.keys); err != nil {
		return err
	}
	if c.warmup > 0 {
		if _, err := o.run(c.warmup); err != nil {
			return err
		}
	}
	st, h, w, err := o.measure(c, filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	printH2Line(c, o, st, h, w)
	return nil
}

// h2Opts are the flags of "grpcload h2" beyond the common ones, and the
// URI file h2load reads.
type h2Opts struct {
	h2load           string
	clients, streams int
	keys             int
	uris             string
}

// writeURIs writes n URIs of /accounts/<key> at addr to path, one a line,
// the keys from the generator seeded with seed.
func writeURIs(path, addr string, seed uint64, n int) error {
	var b bytes.Buffer
	keys := newKeyGen(seed, 0)
	for range n {
		fmt.Fprintf(&b, "http://%s/accounts/%s\n", addr, keys.next())
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// run runs h2load for d with extra arguments and returns its output.
func (o h2Opts) run(d time.Duration, extra ...string) ([]byte, error) {
	a := []string{"-c", strconv.Itoa(o.clients), "-m", strconv.Itoa(o.streams), "-t", "1",
		"-D", strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms", "-i", o.uris}
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, o.h2load, append(a, extra...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("h2load: %v: %s", err, lastLines(out, 3))
	}
	return out, nil
}

// measure runs h2load for the measured window with its per-request log at
// logFile, and returns its summary, the latencies from the log and the
// proxy's measurements over the window.
func (o h2Opts) measure(c *common, logFile string) (h2stats, *hist, window, error) {
	w := window{pid: c.pid}
	w.start()
	out, err := o.run(c.duration, "--log-file", logFile)
	w.stop()
	if err != nil {
		return h2stats{}, nil, w, err
	}
	st, err := parseH2load(out)
	if err != nil {
		return st, nil, w, err
	}
	h, err := readH2log(logFile)
	return st, h, w, err
}

// printH2Line prints the BENCH line of an h2 run.
func printH2Line(c *common, o h2Opts, st h2stats, h *hist, w window) {
	l := newLine(c.round, c.scenario, c.system)
	l.set("calls", st.succeeded)
	l.set("seconds", st.seconds)
	l.set("rps", float64(st.succeeded)/st.seconds)
	l.setLatencies(h)
	l.set("errors", st.failed)
	if st.failed > 0 {
		l.set("first_error", fmt.Sprintf("h2load: %d failed, %d errored, %d timeout; status codes %s",
			st.failed, st.errored, st.timeout, st.statuses))
	}
	l.set("callers", o.clients*o.streams)
	l.set("conns", o.clients)
	w.report(l, st.succeeded)
	fmt.Println(l)
}

type h2stats struct {
	seconds                                          float64
	total, done, succeeded, failed, errored, timeout int64
	statuses                                         string
}

var (
	h2Finished = regexp.MustCompile(`(?m)^finished in ([0-9.]+)(ms|s),`)
	h2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`(?m)^status codes: (.*)$`)
)

// parseH2load reads h2load's summary:
//
//	finished in 10.00s, 61234.50 req/s, 3.21MB/s
//	requests: 612345 total, 612409 started, 612345 done, 612345 succeeded, 0 failed, 0 errored, 0 timeout
//	status codes: 612345 2xx, 0 3xx, 0 4xx, 0 5xx
//
// "failed" counts every request that did not succeed, HTTP-level failures
// (4xx, 5xx) included; "errored" and "timeout" are the ones without an answer.
func parseH2load(out []byte) (h2stats, error) {
	var st h2stats
	m := h2Finished.FindSubmatch(out)
	r := h2Requests.FindSubmatch(out)
	if m == nil || r == nil {
		return st, fmt.Errorf("h2load printed no summary: %s", lastLines(out, 5))
	}
	st.seconds, _ = strconv.ParseFloat(string(m[1]), 64)
	if string(m[2]) == "ms" {
		st.seconds /= 1000
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(string(r[i]), 10, 64); return v }
	st.total, st.done, st.succeeded, st.failed, st.errored, st.timeout = n(1), n(3), n(4), n(5), n(6), n(7)
	if s := h2Status.FindSubmatch(out); s != nil {
		st.statuses = string(s[1])
	}
	if st.seconds <= 0 {
		return st, fmt.Errorf("h2load ran for %q", m[1])
	}
	return st, nil
}

// readH2log reads h2load's --log-file: start time (µs since the epoch), HTTP
// status, µs until the end of the answer; tab-separated. Only answered
// requests with a 2xx status are recorded.
func readH2log(path string) (*hist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := &hist{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 3 || !strings.HasPrefix(fs[1], "2") {
			continue
		}
		us, err := strconv.ParseInt(fs[2], 10, 64)
		if err != nil || us < 0 {
			continue
		}
		h.record(time.Duration(us) * time.Microsecond)
	}
	return h, sc.Err()
}

func lastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return oneLine(strings.Join(ls, " | "))
}
