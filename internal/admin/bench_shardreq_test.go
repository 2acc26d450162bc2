package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// rawShards are n minimal HTTP/1.1 shards on loopback sockets: each
// connection reads a request head (and a Content-Length body) and answers
// 200 "ok" from a fixed buffer, so that nearly all the CPU and every
// allocation a broadcast costs in a benchmark is the broadcaster's own.
func rawShards(tb testing.TB, n int) watch.Topology {
	tb.Helper()
	topo := watch.Topology{Replicas: n}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ln.Close() })
		go acceptRaw(ln)
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: ln.Addr().String(), Ready: true})
	}
	return topo
}

func acceptRaw(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serveRaw(c)
	}
}

var rawAnswer = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")

// serveRaw answers every request on c until it closes. It is no parser:
// the benchmark's requests are small and well formed.
func serveRaw(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 8<<10)
	have := 0
	for {
		end := bytes.Index(buf[:have], []byte("\r\n\r\n"))
		if end < 0 {
			if have == len(buf) {
				return
			}
			n, err := c.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
			continue
		}
		need := end + 4 + rawContentLength(buf[:end])
		for have < need {
			if need > len(buf) {
				return
			}
			n, err := c.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
		}
		if _, err := c.Write(rawAnswer); err != nil {
			return
		}
		have = copy(buf, buf[need:have])
	}
}

func rawContentLength(head []byte) int {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Content-Length")) {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(value)))
			return n
		}
	}
	return 0
}

// BenchmarkBroadcastShardRequest is the broadcaster's cost per shard
// request: whole broadcasts through the admin handler (report, history,
// audit line) to 256 warm raw shards on loopback, reported per shard
// request (ns/shard_req, allocs/shard_req, B/shard_req). The shards are
// in-process but cheap (a read and a write per request, no allocation).
//
//	go test ./internal/admin -run '^$' -bench BroadcastShardRequest -cpuprofile /tmp/cpu.pprof
func BenchmarkBroadcastShardRequest(b *testing.B) {
	const shards = 256
	topo := rawShards(b, shards)
	a := startAdmin(b, Config{Logger: slog.New(slog.DiscardHandler)}, &topo)
	benchBroadcast(b, a.Server, shards) // dials every shard
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	b.ResetTimer()
	for b.Loop() {
		benchBroadcast(b, a.Server, shards)
	}
	b.StopTimer()
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	n := float64(b.N * shards)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/shard_req")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/shard_req")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/shard_req")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/shard_req")
}

// benchBroadcast runs one broadcast through s's handler and checks that
// every shard answered 200.
func benchBroadcast(tb testing.TB, s http.Handler, shards int) {
	req := httptest.NewRequest("POST", "/broadcast/cache/evict", nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 {
		tb.Fatalf("status %d: %.300s", rec.Code, rec.Body)
	}
	if want := fmt.Sprintf(`"succeeded": %d,`, shards); !strings.Contains(rec.Body.String(), want) {
		tb.Fatalf("report without %s: %.300s", want, rec.Body)
	}
}

// processCPU is the CPU time the process used so far, user and system:
// on a shared machine a steadier measure than the wall clock. It counts
// the in-process shards too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A broadcast allocates a few objects per shard, whatever the header:
// the result's body, its line in the report, and the report's own
// (JSON, audit, history) shared out. The bound is a regression guard: a
// per-shard request object, header map or context (net/http's client
// made about 70) fails it.
func TestBroadcastAllocationsPerShard(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector allocates, and sync.Pool drops at random under it")
	}
	const shards, bound = 64, 5.0 // 3.5 measured; the margin is for pools a GC emptied mid-run
	topo := rawShards(t, shards)
	a := startAdmin(t, Config{Logger: slog.New(slog.DiscardHandler)}, &topo)
	benchBroadcast(t, a.Server, shards) // dials every shard
	perShard := testing.AllocsPerRun(20, func() { benchBroadcast(t, a.Server, shards) }) / shards
	t.Logf("%.2f allocations per shard request", perShard)
	if perShard > bound {
		t.Errorf("%.2f allocations per shard request, want at most %.0f", perShard, bound)
	}
}
