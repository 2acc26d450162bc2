package proxy

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// startLeanShard is a shard that answers every request "ok" from fixed
// buffers: it allocates nothing per request, so a test can count the
// proxy's allocations.
func startLeanShard(t testing.TB) watch.Topology {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						have = copy(buf, buf[i+4:have])
						if _, err := c.Write(answer); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return watch.Topology{Replicas: 1, Shards: []watch.Shard{{Ordinal: 0, Name: "lean-0", Addr: ln.Addr().String(), Ready: true}}}
}

// allocsPerRequest sends n keyed GETs on one connection and returns the
// process's allocations per request.
func allocsPerRequest(t *testing.T, p *running, n int, traceFlags string) float64 {
	t.Helper()
	c, err := net.Dial("tcp", p.rawAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := []byte("GET /items/7?x=1 HTTP/1.1\r\nHost: a\r\nX-Shard-Key: 42\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + traceFlags + "\r\n\r\n")
	buf := make([]byte, 4096)
	one := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		have := 0
		for !bytes.HasSuffix(buf[:have], []byte("\r\n\r\nok")) {
			m, err := c.Read(buf[have:])
			if err != nil {
				t.Fatal(err)
			}
			have += m
		}
	}
	for range 1000 { // warm: pools, the log's buffers, the shard connection
		one()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		one()
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.Mallocs-m0.Mallocs) / float64(n)
}

// TestAccessLogAllocations: an HTTP/1.1 exchange allocates about
// nothing with the access log writing every request to a file (key hash
// and query on), as with the log off. The whole process is counted: the lean shard and the
// client allocate nothing per request either.
func TestAccessLogAllocations(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector allocates on its own")
	}
	topo := startLeanShard(t)
	off := startProxy(t, Config{HotKeySample: -1}, ring.Config{}, &topo)
	al := openAccessLog(t, accesslog.Config{KeyHash: true, Query: true})
	on := startProxy(t, Config{HotKeySample: -1, AccessLog: al.log}, ring.Config{}, &topo)
	const n = 3000
	offAllocs := allocsPerRequest(t, off, n, "01")
	onAllocs := allocsPerRequest(t, on, n, "01")
	t.Logf("allocations per request: log off %.3f, log on %.3f", offAllocs, onAllocs)
	// Not exactly 0: when the writer falls behind (a loaded machine), a
	// line buffer is made for each line waiting beyond those made before.
	if onAllocs > 0.25 {
		t.Errorf("with the access log on, %.3f allocations per request (off: %.3f), want about 0", onAllocs, offAllocs)
	}
	_ = al.lines(t, 1000+n) // and every request has its line
}

// TestTracingNotSampledAllocations: with tracing on, a request that is
// not sampled (its traceparent says so, the sampler is parent-based)
// allocates nothing in the whole process.
func TestTracingNotSampledAllocations(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector allocates on its own")
	}
	topo := startLeanShard(t)
	tr, _ := startTracer(t, "grpc", nil) // the default sampler: parentbased_traceidratio
	p := startProxy(t, Config{HotKeySample: -1, Tracer: tr}, ring.Config{}, &topo)
	if n := allocsPerRequest(t, p, 3000, "00"); n > 0.05 {
		t.Errorf("tracing on, not sampled: %.3f allocations per request, want about 0", n)
	}
}
