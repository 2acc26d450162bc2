package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdStream: one GET of a body the shard sends in pieces over time. A proxy
// that streams passes the first piece at once; one that buffers holds
// everything until the last. bursts counts the groups of reads separated
// by at least -burst-gap: a streamed 10-chunk body arrives in 10, a
// buffered one in 1.
func cmdStream(args []string) error {
	fs, c := commonFlags("stream", "stream")
	path := fs.String("path", "/stream?chunks=10&gap=200ms", "what to GET from the shard")
	burstGap := fs.Duration("burst-gap", 50*time.Millisecond, "reads further apart than this start a new burst")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	status, hdr, first, last, n, bursts, te, err := streamOnce(c, *path, *burstGap)
	r.set("status", status)
	r.set("headers_ms", hdr)
	r.set("ttfb_ms", first)
	r.set("ttlb_ms", last)
	r.set("bytes", n)
	r.set("bursts", bursts)
	r.set("framing", te)
	r.set("err", err)
	mon.finish(r)
	r.print()
	return nil
}

func streamOnce(c *common, path string, burstGap time.Duration) (status int, hdr, first, last time.Duration, n int64, bursts int, framing string, err error) {
	cn, err := dial(c.addr, nil, 5*time.Second)
	if err != nil {
		return
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(c.timeout))
	t0 := time.Now()
	if _, err = cn.Write(head("GET", path, c.addr, key(c.seed, 0), -1)); err != nil {
		return
	}
	resp, err := cn.readResponse("GET")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	status, hdr = resp.StatusCode, time.Since(t0)
	switch {
	case len(resp.TransferEncoding) > 0:
		framing = strings.Join(resp.TransferEncoding, ",")
	case resp.ContentLength >= 0:
		framing = "content-length"
	default:
		framing = "close"
	}
	buf := make([]byte, 32<<10)
	var prev time.Time
	for {
		k, rerr := resp.Body.Read(buf)
		now := time.Now()
		if k > 0 {
			if n == 0 {
				first = now.Sub(t0)
			}
			if prev.IsZero() || now.Sub(prev) >= burstGap {
				bursts++
			}
			prev = now
			n += int64(k)
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	last = time.Since(t0)
	return
}

// cmdDownload: -clients concurrent GETs of -bytes each. After they finish
// it reads the proxy's RSS, and with -after once more that much later: a
// proxy that keeps what it buffered shows it there.
func cmdDownload(args []string) error {
	fs, c := commonFlags("download", "download")
	size := sizeFlag(fs, "bytes", 64<<20, "bytes per download")
	clients := fs.Int("clients", 1, "concurrent downloads")
	after := fs.Duration("after", 0, "read the proxy's RSS again this long after the clients finished")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	var st statuses
	var total, ok atomic.Int64
	var wg sync.WaitGroup
	target := fmt.Sprintf("/download?bytes=%d", *size)
	t0 := time.Now()
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, n, err := download(c, target, key(c.seed, i))
			total.Add(n)
			if err == nil && n != *size {
				err = fmt.Errorf("got %d of %d bytes", n, *size)
			}
			if err == nil && status == 200 {
				ok.Add(1)
			}
			st.add(status, err)
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	r.set("clients", *clients)
	r.set("bytes", *size)
	r.set("ok", ok.Load())
	r.set("statuses", st.String())
	r.set("err", st.first)
	r.set("bytes_total", total.Load())
	r.set("seconds", secs)
	r.set("mib_s", float64(total.Load())/(1<<20)/secs)
	// Of a proxy that died there is no "now", only its last reading.
	if end := mon.now(); end.alive {
		r.set("rss_end_kib", end.rss)
	}
	if *after > 0 {
		time.Sleep(*after)
		r.set("after_s", after.Seconds())
		if s := mon.now(); s.alive {
			r.set("rss_after_kib", s.rss)
		}
	}
	mon.finish(r)
	r.print()
	return nil
}

func download(c *common, target, k string) (int, int64, error) {
	cn, err := dial(c.addr, nil, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := cn.Write(head("GET", target, c.addr, k, -1)); err != nil {
		return 0, 0, err
	}
	resp, err := cn.readResponse("GET")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 64<<10))
	return resp.StatusCode, n, err
}

// fillBody is what uploads send.
var fillBody = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = 'A' + byte(i%26)
	}
	return b
}()

// upload sends a POST /upload of size bytes with Content-Length, chunk
// bytes every gap (gap 0: as fast as the proxy takes them), and reads the
// answer concurrently: a proxy may refuse early (413) and close. received
// is the shard's count (X-Received), -1 when unknown.
func upload(c *common, cn *conn, k string, size, chunk int64, gap time.Duration) (status int, sent, received int64, err error) {
	received = -1
	type answer struct {
		status   int
		received int64
		err      error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := cn.readResponse("POST")
		if err != nil {
			got <- answer{err: err}
			return
		}
		// Whatever the answer, the body need not go on: unblock a writer
		// that a proxy refusing early no longer reads from.
		cn.SetWriteDeadline(time.Now())
		rc := int64(-1)
		if v := resp.Header.Get("X-Received"); v != "" {
			rc, _ = strconv.ParseInt(v, 10, 64)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- answer{resp.StatusCode, rc, err}
	}()
	var werr error
	if _, werr = cn.Write(head("POST", "/upload", c.addr, k, size)); werr == nil {
	write:
		for sent < size {
			n := min(chunk, size-sent)
			for n > 0 {
				k := min(n, int64(len(fillBody)))
				w, err := cn.Write(fillBody[:k])
				sent += int64(w)
				n -= int64(w)
				if err != nil {
					werr = err
					break write
				}
			}
			if gap > 0 && sent < size {
				select {
				case a := <-got: // answered before the body was complete
					got <- a
					break write
				case <-time.After(gap):
				}
			}
		}
	}
	a := <-got
	status, received, err = a.status, a.received, a.err
	if err == nil && werr != nil && status == 0 {
		err = werr
	}
	return
}

// cmdUpload: one POST of -bytes with Content-Length, as fast as the proxy
// takes it.
func cmdUpload(args []string) error {
	fs, c := commonFlags("upload", "upload")
	size := sizeFlag(fs, "bytes", 64<<20, "body bytes")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	var status int
	var sent, received int64
	t0 := time.Now()
	cn, err := dial(c.addr, nil, 5*time.Second)
	if err == nil {
		cn.SetDeadline(time.Now().Add(c.timeout))
		status, sent, received, err = upload(c, cn, key(c.seed, 0), *size, *size, 0)
		cn.Close()
	}
	secs := time.Since(t0).Seconds()
	r.set("bytes", *size)
	r.set("status", status)
	r.set("sent", sent)
	r.set("received", received)
	r.set("seconds", secs)
	r.set("mib_s", float64(sent)/(1<<20)/secs)
	r.set("err", err)
	mon.finish(r)
	r.print()
	return nil
}

// cmdSlowUpload: -clients uploaders each sending -bytes with Content-Length,
// -chunk every -gap, and meanwhile one client doing small GETs back to back
// on a keep-alive connection through the same proxy, whose latency shows
// what the slow uploads cost everyone else.
func cmdSlowUpload(args []string) error {
	fs, c := commonFlags("slowupload", "slowupload")
	clients := fs.Int("clients", 500, "slow uploaders")
	size := sizeFlag(fs, "bytes", 4<<20, "body bytes per uploader")
	chunk := sizeFlag(fs, "chunk", 64<<10, "bytes sent per gap")
	gap := fs.Duration("gap", 100*time.Millisecond, "pause between chunks")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	deadline := time.Now().Add(c.timeout)

	var st statuses
	var ok atomic.Int64
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the starts over one gap, so the chunks do not all
			// leave at the same instant.
			time.Sleep(time.Duration(i) * *gap / time.Duration(*clients))
			ts := time.Now()
			cn, err := dial(c.addr, nil, 10*time.Second)
			if err != nil {
				st.add(0, err)
				return
			}
			defer cn.Close()
			cn.SetDeadline(deadline)
			status, _, received, err := upload(c, cn, key(c.seed, i), *size, *chunk, *gap)
			if err == nil && status == 200 && received >= 0 && received != *size {
				err = fmt.Errorf("shard received %d of %d bytes", received, *size)
			}
			if err == nil && status == 200 {
				ok.Add(1)
				mu.Lock()
				took = append(took, time.Since(ts))
				mu.Unlock()
			}
			st.add(status, err)
		}()
	}
	uploadsDone := make(chan struct{})
	go func() { wg.Wait(); close(uploadsDone) }()

	// The fast client runs until the last upload ends.
	var lat []time.Duration
	fastErr := 0
	var firstFastErr error
	var cn *conn
	for i := 0; ; i++ {
		select {
		case <-uploadsDone:
		default:
			if cn == nil {
				var err error
				if cn, err = dial(c.addr, nil, 5*time.Second); err != nil {
					fastErr++
					firstFastErr = cmp(firstFastErr, err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
			}
			cn.SetDeadline(time.Now().Add(10 * time.Second))
			ts := time.Now()
			status, err := cn.get(c.addr, "/", key(c.seed+1, i))
			d := time.Since(ts)
			if err == nil && status != 200 {
				err = fmt.Errorf("status %d", status)
			}
			if err != nil {
				fastErr++
				firstFastErr = cmp(firstFastErr, err)
				cn.Close()
				cn = nil
				continue
			}
			lat = append(lat, d)
			continue
		}
		break
	}
	if cn != nil {
		cn.Close()
	}
	secs := time.Since(t0).Seconds()
	slices.Sort(took)
	slices.Sort(lat)
	r.set("clients", *clients)
	r.set("bytes", *size)
	r.set("chunk", *chunk)
	r.set("gap_ms", *gap)
	r.set("ok", ok.Load())
	r.set("statuses", st.String())
	r.set("err", st.first)
	r.set("seconds", secs)
	r.set("upload_p50_s", percentile(took, 50).Seconds())
	r.set("upload_max_s", percentile(took, 100).Seconds())
	r.set("fast_n", len(lat))
	r.set("fast_err", fastErr)
	r.set("fast_first_err", firstFastErr)
	r.set("fast_p50_ms", percentile(lat, 50))
	r.set("fast_p99_ms", percentile(lat, 99))
	r.set("fast_max_ms", percentile(lat, 100))
	mon.finish(r)
	r.print()
	return nil
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// cmdIdle: -conns keep-alive connections, each made one small request and
// then left open. The file-descriptor limit of one process is often lower
// than that, so -procs worker processes hold them, each from its own
// loopback source address (127.0.0.<src-base+i>). Before the connections
// and after they are all open (and -settle later) it reads the proxy's RSS
// and open descriptors; then it checks how many connections the proxy
// still holds open.
func cmdIdle(args []string) error {
	fs, c := commonFlags("idle", "idle")
	conns := fs.Int("conns", 20000, "idle connections")
	procs := fs.Int("procs", 4, "worker processes holding them")
	srcBase := fs.Int("src-base", 2, "worker i connects from 127.0.0.<src-base+i>")
	conc := fs.Int("concurrency", 64, "connections being opened at once, per worker")
	settle := fs.Duration("settle", 2*time.Second, "wait after the last connection before reading RSS")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	before := mon.now()
	fdsBefore := countFDs(c.pid)
	self, err := os.Executable()
	if err != nil {
		return err
	}

	type worker struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	var ws []*worker
	stopAll := func() {
		for _, w := range ws {
			w.stdin.Close()
		}
		for _, w := range ws {
			w.cmd.Wait()
		}
	}
	t0 := time.Now()
	for i := 0; i < *procs; i++ {
		n := *conns / *procs
		if i < *conns%*procs {
			n++
		}
		cmd := exec.Command(self, "idle-worker", "-addr", c.addr, "-conns", strconv.Itoa(n),
			"-src", fmt.Sprintf("127.0.0.%d", *srcBase+i), "-concurrency", strconv.Itoa(*conc),
			"-seed", strconv.FormatUint(c.seed+uint64(i)*1000003, 10), "-timeout", c.timeout.String())
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			stopAll()
			return err
		}
		ws = append(ws, &worker{cmd, stdin, bufio.NewScanner(stdout)})
	}
	defer stopAll()

	// Each worker answers a line per command: "READY ok=N fail=N err=..."
	// once its connections are open, "ALIVE n=N" after "check".
	readAll := func(prefix string) (sums map[string]int, firstErr string) {
		sums = map[string]int{}
		for _, w := range ws {
			if !w.out.Scan() {
				if firstErr == "" {
					firstErr = "a worker exited"
				}
				continue
			}
			line := w.out.Text()
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			for _, kv := range strings.Fields(strings.TrimPrefix(line, prefix)) {
				k, v, _ := strings.Cut(kv, "=")
				if k == "err" {
					if s, err := strconv.Unquote(v); err == nil && s != "" && firstErr == "" {
						firstErr = s
					}
					continue
				}
				n, _ := strconv.Atoi(v)
				sums[k] += n
			}
		}
		return sums, firstErr
	}
	ready, firstErr := readAll("READY ")
	openSecs := time.Since(t0).Seconds()
	time.Sleep(*settle)
	after := mon.now()
	fdsAfter := countFDs(c.pid)
	for _, w := range ws {
		io.WriteString(w.stdin, "check\n")
	}
	alive, _ := readAll("ALIVE ")

	held := ready["ok"]
	r.set("conns", *conns)
	r.set("held", held)
	r.set("failed", ready["fail"])
	r.set("err", firstErr)
	r.set("open_s", openSecs)
	r.set("still_open", alive["n"])
	r.set("rss_before_kib", before.rss)
	if after.alive {
		r.set("rss_after_kib", after.rss)
		if held > 0 && before.rss > 0 {
			r.set("per_conn_bytes", float64(after.rss-before.rss)*1024/float64(held))
		}
	}
	r.set("fds_before", fdsBefore)
	r.set("fds_after", fdsAfter)
	mon.finish(r)
	r.print()
	return nil
}

func cmdIdleWorker(args []string) error {
	fs, c := commonFlags("idle-worker", "idle")
	conns := fs.Int("conns", 5000, "connections to open and hold")
	src := fs.String("src", "", "source address")
	conc := fs.Int("concurrency", 64, "connections being opened at once")
	fs.Parse(args)
	var srcIP net.IP
	if *src != "" {
		if srcIP = net.ParseIP(*src); srcIP == nil {
			return fmt.Errorf("bad -src %q", *src)
		}
	}
	held := make([]*conn, *conns)
	var st statuses
	var fail atomic.Int64
	sem := make(chan struct{}, max(*conc, 1))
	var wg sync.WaitGroup
	for i := range held {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cn, err := dial(c.addr, srcIP, 10*time.Second)
			if err == nil {
				cn.SetDeadline(time.Now().Add(30 * time.Second))
				var status int
				status, err = cn.get(c.addr, "/", key(c.seed, i))
				if err == nil && status != 200 {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					cn.Close()
				} else {
					cn.SetDeadline(time.Time{})
					held[i] = cn
				}
			}
			if err != nil {
				fail.Add(1)
				st.add(0, err)
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, cn := range held {
		if cn != nil {
			ok++
		}
	}
	fmt.Printf("READY ok=%d fail=%d err=%q\n", ok, fail.Load(), short(st.first))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "check" {
			n := 0
			for _, cn := range held {
				if cn != nil && stillOpen(cn) {
					n++
				}
			}
			fmt.Printf("ALIVE n=%d\n", n)
		}
	}
	for _, cn := range held {
		if cn != nil {
			cn.Close()
		}
	}
	return nil
}

// stillOpen peeks at the socket without blocking: nothing to read means the
// proxy still holds the connection; end of stream or an error means it
// closed it.
func stillOpen(cn *conn) bool {
	if cn.br.Buffered() > 0 {
		return true
	}
	tc, ok := cn.Conn.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, syscall.EAGAIN)
		return true
	})
	return open
}

// cmdHugeCL: the shard declares Content-Length: -declared, sends -send
// bytes, stalls -stall and closes. Then: is the proxy alive, does the next
// request get 200?
func cmdHugeCL(args []string) error {
	fs, c := commonFlags("hugecl", "hugecl")
	declared := sizeFlag(fs, "declared", 64<<30, "Content-Length the shard declares")
	send := sizeFlag(fs, "send", 64<<10, "bytes the shard sends before stalling")
	stall := fs.Duration("stall", 3*time.Second, "how long the shard stalls before closing")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	target := fmt.Sprintf("/huge-cl?bytes=%d&send=%d&stall=%s", *declared, *send, *stall)
	var status int
	var cl, n int64 = -1, 0
	t0 := time.Now()
	cn, err := dial(c.addr, nil, 5*time.Second)
	if err == nil {
		cn.SetDeadline(time.Now().Add(*stall + 30*time.Second))
		if _, err = cn.Write(head("GET", target, c.addr, key(c.seed, 0), -1)); err == nil {
			var resp *http.Response
			if resp, err = cn.readResponse("GET"); err == nil {
				status, cl = resp.StatusCode, resp.ContentLength
				n, err = io.CopyBuffer(io.Discard, resp.Body, make([]byte, 64<<10))
				resp.Body.Close()
			}
		}
		cn.Close()
	}
	secs := time.Since(t0).Seconds()
	r.set("declared", *declared)
	r.set("status", status)
	r.set("content_length", cl)
	r.set("bytes", n)
	r.set("client_err", err)
	r.set("seconds", secs)
	// Give a proxy that is going down a moment to do so, then try it.
	time.Sleep(500 * time.Millisecond)
	next, nerr := 0, error(nil)
	if cn, nerr = dial(c.addr, nil, 5*time.Second); nerr == nil {
		cn.SetDeadline(time.Now().Add(10 * time.Second))
		next, nerr = cn.get(c.addr, "/", key(c.seed, 1))
		cn.Close()
	}
	r.set("next_status", next)
	r.set("next_err", nerr)
	mon.finish(r)
	r.print()
	return nil
}
