package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/ring"
)

// A request whose shard thinks waits in the parker, without a goroutine
// (TestWaitingRequestCost measures that); these check that it comes back
// from there exactly as it would have on its goroutine: answered, with
// the connection's next requests after it; cancelled when its client
// hangs up; timed out in total; served through a graceful shutdown; sent
// again when its pooled connection turns out closed.

// heldShard answers each request once its gate opens, counting the
// requests it read. With hangups, it never answers: it reads on until the
// proxy closes the connection, and counts that.
type heldShard struct {
	*rawShard
	got, hangups atomic.Int64
	open         *gate
}

func startHeldShard(t *testing.T, hangups bool) *heldShard {
	h := &heldShard{open: newGate()}
	h.rawShard = startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			h.got.Add(1)
			if hangups {
				_, _ = io.Copy(io.Discard, br)
				h.hangups.Add(1)
				return
			}
			<-h.open.wait()
			if _, err := io.WriteString(c, okResponse("late "+req.Target())); err != nil {
				return
			}
		}
	})
	h.open.openAtEnd(t)
	return h
}

// parkedNow waits until n requests wait in the parker with no goroutine
// of the engine for them.
func parkedNow(t *testing.T, p *running, n int64, engineBefore int) {
	t.Helper()
	waitUntil(t, wireTimeout, "the request waits in the parker", func() bool {
		return p.http1.WaitingLean() == n && goroutinesIn("/internal/proxy/http1.") <= engineBefore
	})
}

// sendParked sends req on rc and waits until it waits in the parker.
func sendParked(t *testing.T, p *running, rc *rawClient, req string) {
	t.Helper()
	base := goroutinesIn("/internal/proxy/http1.")
	rc.send(req)
	parkedNow(t, p, 1, base)
}

func TestParkedRequest(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parker needs epoll")
	}
	t.Run("answered, then the next requests", func(t *testing.T) {
		shard := startHeldShard(t, false)
		p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		// Two requests pipelined: the second waits behind the first.
		sendParked(t, p, rc, "GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		shard.open.open()
		for _, want := range []string{"late /a", "late /b"} {
			a := rc.response("GET")
			if a.Status() != 200 || string(a.Body) != want {
				t.Fatalf("answer %q %q, want 200 %q", a.Head, a.Body, want)
			}
		}
		a := rc.roundTrip("GET /c HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET")
		if a.Status() != 200 || string(a.Body) != "late /c" {
			t.Fatalf("the next request got %q %q", a.Head, a.Body)
		}
	})
	t.Run("the client hangs up", func(t *testing.T) {
		shard := startHeldShard(t, true)
		p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		sendParked(t, p, rc, "GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		_ = rc.c.Close()
		// The request is cancelled: its shard connection closes.
		waitUntil(t, wireTimeout, "the shard sees its request cancelled", func() bool { return shard.hangups.Load() == 1 })
		waitUntil(t, wireTimeout, "nothing waits any more", func() bool { return p.http1.WaitingLean() == 0 })
	})
	t.Run("the answer head's time is a total bound", func(t *testing.T) {
		shard := startHeldShard(t, false)
		const timeout = 3 * time.Second
		p := startProxy(t, Config{UpstreamTimeout: timeout}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		start := time.Now()
		sendParked(t, p, rc, "GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		a := rc.response("GET")
		took := time.Since(start)
		if a.Status() != 504 {
			t.Fatalf("answer %q, want 504", a.Head)
		}
		if took < timeout || took > timeout+time.Second {
			t.Fatalf("504 after %v, want within a second after %v", took, timeout)
		}
	})
	t.Run("graceful shutdown serves it", func(t *testing.T) {
		shard := startHeldShard(t, false)
		p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		sendParked(t, p, rc, "GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), wireTimeout)
			defer cancel()
			done <- p.Shutdown(ctx)
		}()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned (%v) with a request waiting for its shard", err)
		case <-time.After(200 * time.Millisecond):
		}
		shard.open.open()
		a := rc.response("GET")
		if a.Status() != 200 || string(a.Body) != "late /a" || a.Get("Connection") != "close" {
			t.Fatalf("answer %q %q, want 200 \"late /a\" with Connection: close", a.Head, a.Body)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
	t.Run("a pooled connection that closes is tried once more", func(t *testing.T) {
		var first atomic.Bool
		parked := make(chan net.Conn, 1)
		var got atomic.Int64
		shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := readRawRequest(br)
				if err != nil {
					return
				}
				got.Add(1)
				if req.Target() == "/b" && first.CompareAndSwap(false, true) {
					parked <- c // the test closes it once the request is parked
					_, _ = io.Copy(io.Discard, br)
					return
				}
				if _, err := io.WriteString(c, okResponse("ok "+req.Target())); err != nil {
					return
				}
			}
		})
		p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
		rc := dialRaw(t, p)
		if a := rc.roundTrip("GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET"); a.Status() != 200 {
			t.Fatalf("first answer %q", a.Head)
		}
		base := goroutinesIn("/internal/proxy/http1.")
		rc.send("GET /b HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		c := <-parked
		parkedNow(t, p, 1, base)
		_ = c.Close()
		a := rc.response("GET")
		if a.Status() != 200 || string(a.Body) != "ok /b" {
			t.Fatalf("answer %q %q, want 200 \"ok /b\" from a fresh connection", a.Head, a.Body)
		}
		if got.Load() != 3 || shard.connections() != 2 {
			t.Fatalf("the shard read %d requests on %d connections, want 3 on 2", got.Load(), shard.connections())
		}
	})
}
