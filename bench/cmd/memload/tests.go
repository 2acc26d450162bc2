package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// streamed is what one GET of a streamed body came to: the status, when
// the head, the first and the last body byte arrived, the bytes, in how
// many bursts, the framing the client saw, and the error that ended it.
type streamed struct {
	status           int
	hdr, first, last time.Duration
	n                int64
	bursts           int
	framing          string
	err              error
}

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
	s := streamOnce(c, *path, *burstGap)
	r.set("status", s.status)
	r.set("headers_ms", s.hdr)
	r.set("ttfb_ms", s.first)
	r.set("ttlb_ms", s.last)
	r.set("bytes", s.n)
	r.set("bursts", s.bursts)
	r.set("framing", s.framing)
	r.set("err", s.err)
	mon.finish(r)
	r.print()
	return nil
}

func streamOnce(c *common, path string, burstGap time.Duration) (s streamed) {
	cn, err := dial(c.addr, nil, 5*time.Second)
	if err != nil {
		s.err = err
		return
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(c.timeout))
	t0 := time.Now()
	if _, s.err = cn.Write(head("GET", path, c.addr, key(c.seed, 0), -1)); s.err != nil {
		return
	}
	resp, err := cn.readResponse("GET")
	if err != nil {
		s.err = err
		return
	}
	defer resp.Body.Close()
	s.status, s.hdr = resp.StatusCode, time.Since(t0)
	switch {
	case len(resp.TransferEncoding) > 0:
		s.framing = strings.Join(resp.TransferEncoding, ",")
	case resp.ContentLength >= 0:
		s.framing = "content-length"
	default:
		s.framing = "close"
	}
	buf := make([]byte, 32<<10)
	var prev time.Time
	for {
		k, rerr := resp.Body.Read(buf)
		now := time.Now()
		if k > 0 {
			if s.n == 0 {
				s.first = now.Sub(t0)
			}
			if prev.IsZero() || now.Sub(prev) >= burstGap {
				s.bursts++
			}
			prev = now
			s.n += int64(k)
		}
		if rerr != nil {
			if rerr != io.EOF {
				s.err = rerr
			}
			break
		}
	}
	s.last = time.Since(t0)
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

	t0 := time.Now()
	u := startSlowUploads(c, *clients, *size, *chunk, *gap, deadline)
	// The fast client runs until the last upload ends.
	fast := fastClient(c, u.done)
	secs := time.Since(t0).Seconds()
	slices.Sort(u.took)
	slices.Sort(fast.lat)
	r.set("clients", *clients)
	r.set("bytes", *size)
	r.set("chunk", *chunk)
	r.set("gap_ms", *gap)
	r.set("ok", u.ok.Load())
	r.set("statuses", u.st.String())
	r.set("err", u.st.first)
	r.set("seconds", secs)
	r.set("upload_p50_s", percentile(u.took, 50).Seconds())
	r.set("upload_max_s", percentile(u.took, 100).Seconds())
	r.set("fast_n", len(fast.lat))
	r.set("fast_err", fast.errs)
	r.set("fast_first_err", fast.first)
	r.set("fast_p50_ms", percentile(fast.lat, 50))
	r.set("fast_p99_ms", percentile(fast.lat, 99))
	r.set("fast_max_ms", percentile(fast.lat, 100))
	mon.finish(r)
	r.print()
	return nil
}

// slowUploads are the uploaders of cmdSlowUpload: their answers, and how
// long the complete ones took (to read once done is closed).
type slowUploads struct {
	st   statuses
	ok   atomic.Int64
	mu   sync.Mutex
	took []time.Duration
	done chan struct{} // closed when the last upload has ended
}

// startSlowUploads starts n uploads of size bytes, chunk bytes every gap.
func startSlowUploads(c *common, n int, size, chunk int64, gap time.Duration, deadline time.Time) *slowUploads {
	u := &slowUploads{done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the starts over one gap, so the chunks do not all
			// leave at the same instant.
			time.Sleep(time.Duration(i) * gap / time.Duration(n))
			u.one(c, i, size, chunk, gap, deadline)
		}()
	}
	go func() { wg.Wait(); close(u.done) }()
	return u
}

// one is uploader i.
func (u *slowUploads) one(c *common, i int, size, chunk int64, gap time.Duration, deadline time.Time) {
	ts := time.Now()
	cn, err := dial(c.addr, nil, 10*time.Second)
	if err != nil {
		u.st.add(0, err)
		return
	}
	defer cn.Close()
	cn.SetDeadline(deadline)
	status, _, received, err := upload(c, cn, key(c.seed, i), size, chunk, gap)
	if err == nil && status == 200 && received >= 0 && received != size {
		err = fmt.Errorf("shard received %d of %d bytes", received, size)
	}
	if err == nil && status == 200 {
		u.ok.Add(1)
		u.mu.Lock()
		u.took = append(u.took, time.Since(ts))
		u.mu.Unlock()
	}
	u.st.add(status, err)
}

// fastStats: the fast client's answer times, its errors and the first.
type fastStats struct {
	lat   []time.Duration
	errs  int
	first error
}

func (f *fastStats) fail(err error) {
	f.errs++
	f.first = cmp(f.first, err)
}

// fastClient sends small GETs back to back on one keep-alive connection
// (a new one after an error) until done is closed.
func fastClient(c *common, done <-chan struct{}) fastStats {
	var f fastStats
	var cn *conn
	for i := 0; ; i++ {
		select {
		case <-done:
			if cn != nil {
				cn.Close()
			}
			return f
		default:
		}
		if cn == nil {
			var err error
			if cn, err = dial(c.addr, nil, 5*time.Second); err != nil {
				f.fail(err)
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
			f.fail(err)
			cn.Close()
			cn = nil
			continue
		}
		f.lat = append(f.lat, d)
	}
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
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
