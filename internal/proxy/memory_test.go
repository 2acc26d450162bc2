package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"

	"github.com/shard-proxy/shard-proxy/internal/proxy/http1"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// A connection holds a read buffer only while bytes are there to read: a
// new one whose request is still on its way, and a keep-alive one between
// requests, wait with none (before hotIdle parks them, too).
func TestWaitingConnectionsHoldNoBuffers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("lean reads are Linux only")
	}
	const n = 200
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	before := http1.CountBuffers()
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, p)
	}
	waitUntil(t, wireTimeout, "every connection is served", func() bool { return p.http1.Open() >= n })
	if held := http1.CountBuffers() - before; held > n/20 {
		t.Errorf("%d new connections with no request yet hold %d buffers", n, held)
	}
	for i, rc := range clients {
		if a := rc.roundTrip(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\nX-Shard-Key: %d\r\n\r\n", i, i), "GET"); a.Status() != 200 {
			t.Fatalf("answer %q", a.Raw())
		}
	}
	if held := http1.CountBuffers() - before; held > n/20 {
		t.Errorf("%d keep-alive connections between requests hold %d buffers", n, held)
	}
}

// A connection that closes gives its buffers back, with bytes still unread
// in them: a request pipelined behind "Connection: close", a head the
// client left half sent.
func TestClosedConnectionsGiveBuffersBack(t *testing.T) {
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) { return okResponse("ok"), false }))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	before := http1.CountBuffers()
	const n = 20
	for i := 0; i < n; i++ {
		rc := dialRaw(t, p)
		rc.send("GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nConnection: close\r\n\r\n" +
			"GET /b HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		if a := rc.response("GET"); a.Status() != 200 {
			t.Fatalf("answer %q", a.Raw())
		}
		rc.closed()
	}
	waitUntil(t, wireTimeout, "every connection closed", func() bool { return p.http1.Open() == 0 })
	for i := 0; i < n; i++ {
		rc := dialRaw(t, p)
		rc.send("GET /partial HT")
		waitUntil(t, wireTimeout, "the partial head is read", func() bool { return http1.CountBuffers()-before > 0 })
		rc.c.Close()
		waitUntil(t, wireTimeout, "the connection closed", func() bool { return p.http1.Open() == 0 })
	}
	if held := http1.CountBuffers() - before; held != 0 {
		t.Errorf("no connection open, yet %d buffers are still taken", held)
	}
}

// An idle keep-alive connection gives its buffers back and keeps no slice
// of them, whatever its last request was; it serves the next request as
// before.
func TestIdleConnectionHoldsNoBuffers(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{Keys: mustRules(t, "body:id,header:X-Shard-Key")}, ring.Config{}, &topo)
	requests := map[string]string{
		"GET":                 "GET /a HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n",
		"POST, buffered body": "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n{\"id\": 42}",
		// A chunked body for a body rule is copied out of the read buffer
		// with its head; a bad one is refused before any exchange.
		"POST, chunked body": "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\na\r\n{\"id\": 42}\r\n0\r\n\r\n",
		"POST, bad body":     "POST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n0\r\n\r\n",
	}
	clients := map[string]*rawClient{}
	for name, req := range requests {
		rc := dialRaw(t, p)
		a := rc.roundTrip(req, "POST")
		if want := map[bool]int{true: 400, false: 200}[name == "POST, bad body"]; a.Status() != want {
			t.Fatalf("%s: answer %q", name, a.Raw())
		}
		clients[name] = rc
	}
	waitUntil(t, wireTimeout, "every connection is parked", func() bool {
		return p.inspectParked(t, nil) == len(requests)
	})
	p.inspectParked(t, func(held []string) {
		if len(held) > 0 {
			t.Errorf("a parked connection still holds %v", held)
		}
	})
	for name, rc := range clients {
		if a := rc.roundTrip("GET /again HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET"); a.Status() != 200 {
			t.Errorf("%s, then idle, then another request: %q", name, a.Raw())
		}
	}
}

// Many connections that each served a request at the same time, then went
// idle, cost next to no heap: the buffers they used can be collected.
func TestIdleConnectionsCostNoHeap(t *testing.T) {
	const conns = 256
	shards := testutil.StartShards(t, 1, "web")
	var arrived atomic.Int32
	all := newGate()
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		// Every request is held until all have arrived, so that each
		// connection has buffers of its own at the same time.
		if arrived.Add(1) == conns {
			all.open()
		}
		<-all.wait()
		w.Header().Set("Connection", "close") // the shard's side goes away; only the proxy's idle side stays
		fmt.Fprint(w, "ok")
	})
	all.openAtEnd(t)
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)

	clients := make([]*rawClient, conns)
	for i := range clients {
		clients[i] = dialRaw(t, p)
	}
	waitUntil(t, wireTimeout, "every connection is parked", func() bool { return p.inspectParked(t, nil) == conns })
	before := heapAfterPoolsEmpty()
	var wg sync.WaitGroup
	for i, rc := range clients {
		wg.Go(func() {
			rc.send(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nX-Pad: %0200d\r\n\r\n", i, i))
			if _, err := readRawResponse(rc.br, "GET"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitUntil(t, wireTimeout, "every connection is parked again", func() bool { return p.inspectParked(t, nil) == conns })
	after := heapAfterPoolsEmpty()
	grew := int64(after) - int64(before)
	t.Logf("%d idle connections that served a request hold %d KiB more heap than before", conns, grew>>10)
	// Each connection used three 16 KiB buffers; kept reachable, they would
	// weigh 12 MiB here.
	if limit := int64(conns * 4 << 10); grew > limit {
		t.Errorf("%d idle connections grew the heap by %d KiB, want under %d KiB: they keep buffers reachable", conns, grew>>10, limit>>10)
	}
}

// heapAfterPoolsEmpty is the heap in use once sync.Pool has dropped what it
// held (its victim cache survives one collection).
func heapAfterPoolsEmpty() uint64 {
	runtime.GC()
	runtime.GC()
	return memStats().HeapInuse
}

// TestWaitingRequestCost measures what a request costs while its shard
// thinks (a hung shard): heap and goroutine stacks per request, over 500
// requests held at once, from idle parked connections. Past a look at the
// client without an answer, a request gives back its buffers (its head,
// kept for a retry on a fresh connection, moves to a copy of its own
// size), and on Linux its goroutine too: it waits in the parker, which
// resumes it on a new goroutine when the shard's socket turns readable.
// It was 57 KiB (three buffers and a goroutine) before.
// WAITING_HEAP_PROFILE=FILE writes a heap profile of the waiting state,
// every allocation sampled, to see what a waiting request holds.
func TestWaitingRequestCost(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 500 requests on a hung shard")
	}
	const n = 500
	if os.Getenv("WAITING_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	var got atomic.Int64
	release := make(chan struct{})
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		got.Add(1)
		<-release
	})
	t.Cleanup(func() { close(release) })
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, p)
	}
	// Measured from idle, parked connections, which hold nothing.
	waitUntil(t, wireTimeout, "every connection is parked", func() bool { return p.inspectParked(t, nil) == n })
	heapAfterPoolsEmpty()
	before := memStats()
	engineBefore := goroutinesIn("/internal/proxy/http1.")
	for i, rc := range clients {
		rc.send(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", i))
	}
	waitUntil(t, wireTimeout, "every request reaches the shard", func() bool { return got.Load() == n })
	waitUntil(t, wireTimeout, "every request waits without buffers", func() bool { return p.http1.WaitingLean() == n })
	if runtime.GOOS == "linux" {
		// No goroutine of the engine per waiting request: at most a few
		// still on their way out when looked at.
		waitUntil(t, wireTimeout, "the waiting requests leave their goroutines", func() bool {
			return goroutinesIn("/internal/proxy/http1.") <= engineBefore+n/100
		})
	}
	after := heapAfterPoolsEmpty()
	stats := memStats()
	if f := os.Getenv("WAITING_HEAP_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.WriteHeapProfile(out); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the engine runs %d goroutines with %d requests waiting (%d before)", goroutinesIn("/internal/proxy/http1."), n, engineBefore)
	heap := (int64(after) - int64(before.HeapInuse)) / n
	stack := (int64(stats.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("a request waiting for its shard costs %.1f KiB of heap and %.1f KiB of goroutine stack (%d requests)",
		float64(heap)/1024, float64(stack)/1024, n)
	// A copy of its head, two sockets (and the test shard's goroutine,
	// counted in the stacks): under 20 KiB (one 16 KiB buffer held would
	// pass it); the race detector grows stacks.
	limit := int64(20 << 10)
	if testutil.Race {
		limit = 28 << 10
	}
	if total := heap + stack; total > limit {
		t.Errorf("a waiting request costs %d KiB, want under %d", total>>10, limit>>10)
	}
}

// goroutinesIn counts the goroutines whose stack runs through a function
// whose name contains pkg.
func goroutinesIn(pkg string) int {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(pkg)) {
			n++
		}
	}
	return n
}

// TestRelayWaitingExchangeCost: an HTTP/2 stream relayed to an HTTP/1.1
// shard that thinks gives back its answer buffer after the first look (a
// hung shard costs each stream its exchange goroutine, not 16 KiB more),
// and a stream the client resets while it waits so is cancelled at once:
// its shard connection closes.
func TestRelayWaitingExchangeCost(t *testing.T) {
	if os.Getenv("WAITING_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	const n = 90 // within one client connection's stream limit
	var got, hangups atomic.Int64
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		got.Add(1)
		// Never answers; reads until the proxy closes (with a byte of
		// buffer: the shard's heap is measured too).
		var b [1]byte
		for {
			if _, err := br.Read(b[:]); err != nil {
				break
			}
		}
		hangups.Add(1)
	})
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	c := dialRelay(t, p.url, bigWindows)
	first, ids, heapEach := openMeasuredStreams(t, c, n, &got)
	// Past the first look (10 ms) every exchange waits without its buffer:
	// under 12 KiB each, the test shard's own reader (4 KiB) counted; a
	// 16 KiB answer buffer held would pass it.
	var perStream int64
	waitUntil(t, wireTimeout, "the waiting exchanges give back their buffers", func() bool {
		perStream = heapEach()
		return perStream < 12<<10
	})
	t.Logf("an HTTP/2 stream waiting for its HTTP/1.1 shard holds %.1f KiB of heap", float64(perStream)/1024)
	if f := os.Getenv("WAITING_HEAP_PROFILE"); f != "" {
		out, _ := os.Create(f)
		_ = pprof.WriteHeapProfile(out)
		out.Close()
	}
	for _, id := range append(ids, first) {
		if err := c.rst(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, wireTimeout, "every reset stream's shard connection closes", func() bool { return hangups.Load() == n+1 })
}

// TestRelayStalledClientCost: an HTTP/2 client that opens no window
// (SETTINGS_INITIAL_WINDOW_SIZE 0) on streams of 1 MiB answers from an
// HTTP/1.1 shard costs each stream the buffer its exchange read the head
// into, not that and a copy of it waiting for the window; when the client
// opens its windows, every answer arrives whole.
func TestRelayStalledClientCost(t *testing.T) {
	const n, size = 50, 1 << 20
	body := strings.Repeat("x", size)
	var got atomic.Int64
	shard := startRawShard(t, eachRequest(func(rawMsg) (string, bool) {
		got.Add(1)
		return okResponse(body), false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	c := dialRelay(t, p.url, dialOpts{window: 0})
	warm, ids, heapEach := openMeasuredStreams(t, c, n, &got)
	// Each exchange has read its head and the start of its body, and
	// waits: under 28 KiB each (its 16 KiB buffer, and the test shard's
	// 4 KiB reader; a copy waiting for the window would take it near 40).
	var perStream int64
	waitUntil(t, wireTimeout, "the stalled exchanges hold one buffer each", func() bool {
		perStream = heapEach()
		return perStream < 28<<10
	})
	t.Logf("an HTTP/2 stream stalled by its client holds %.1f KiB of heap", float64(perStream)/1024)
	for _, id := range append([]uint32{warm}, ids...) {
		if err := c.windowUpdate(id, size); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.windowUpdate(0, (n+1)*size); err != nil {
		t.Fatal(err)
	}
	for _, id := range append([]uint32{warm}, ids...) {
		if a := c.answer(t, id); a.status() != "200" || len(a.body) != size {
			t.Fatalf("stream %d: %s with %d bytes, want 200 with %d", id, a.status(), len(a.body), size)
		}
	}
}

// openMeasuredStreams opens one stream whose request reaches the shard
// first (the relay's own allocations, pools and tables, are made before
// the measure), then n more, and waits until the shard counted (got) all
// of them. heapEach tells the heap grown since the first, per stream.
func openMeasuredStreams(t *testing.T, c *h2peer, n int, got *atomic.Int64) (first uint32, ids []uint32, heapEach func() int64) {
	t.Helper()
	first = c.newStream()
	c.mustHeaders(t, first, reqHead("GET", "/warm", "k"), true)
	waitUntil(t, wireTimeout, "the first request reaches the shard", func() bool { return got.Load() == 1 })
	before := heapAfterPoolsEmpty()
	ids = make([]uint32, n)
	for i := range ids {
		ids[i] = c.newStream()
		c.mustHeaders(t, ids[i], reqHead("GET", fmt.Sprintf("/%d", i), "k"), true)
	}
	waitUntil(t, wireTimeout, "every request reaches the shard", func() bool { return got.Load() == int64(n)+1 })
	return first, ids, func() int64 { return (int64(heapAfterPoolsEmpty()) - int64(before)) / int64(n) }
}
