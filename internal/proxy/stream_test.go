package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Bytes a shard writes reach the client as they are written, whatever the
// framing: the shard writes its first piece and holds the rest until the
// client has read a byte of it, so a proxy that buffered the answer would
// leave the client waiting (its read deadline fails the test).
func TestResponsesStream(t *testing.T) {
	const pieces = 5
	// gates hands each request the channel the client closes once the
	// first piece arrived; ended stops a shard that still waits.
	gates := make(chan chan struct{}, 1)
	ended := make(chan struct{})
	t.Cleanup(func() { close(ended) })
	produce := func(write func(i int), flush func()) {
		gate := <-gates
		write(0)
		flush()
		select {
		case <-gate:
		case <-ended:
			return
		}
		for i := 1; i < pieces; i++ {
			write(i)
			flush()
		}
	}
	shards := testutil.StartShards(t, 1, "web")
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
		}
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", strconv.Itoa(pieces*len("piece 0\n")))
		}
		produce(func(i int) {
			if r.URL.Path == "/sse" {
				fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			} else {
				fmt.Fprintf(w, "piece %d\n", i)
			}
		}, w.(http.Flusher).Flush)
	})
	// A shard that delimits its body by closing, as HTTP/1.0 servers do.
	closing := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRawRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		produce(func(i int) { fmt.Fprintf(c, "piece %d\n", i) }, func() {})
	})
	topo := testutil.Topology(shards)
	topo.Shards = append(topo.Shards, rawTopology(closing.addr).Shards[0])
	topo.Shards[1].Ordinal, topo.Replicas = 1, 2
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)

	for _, tc := range []struct{ name, path, key string }{
		{"chunked", "/chunked", "0"},
		{"server-sent events", "/sse", "0"},
		{"content-length", "/length", "0"},
		{"until close", "/close", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			gates <- gate
			rc := dialRaw(t, p)
			rc.send("GET " + tc.path + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: " + tc.key + "\r\n\r\n")
			head, err := readRawHead(rc.br)
			if err != nil {
				t.Fatalf("the answer's head did not come while the shard held its body: %v", err)
			}
			if head.Status() != 200 {
				t.Fatalf("answer %q", head.Head)
			}
			// The first payload byte, whatever the framing, while the shard
			// holds the rest.
			if _, err := rc.br.Peek(1); err != nil {
				t.Fatalf("the first piece did not come while the shard held the rest: %v", err)
			}
			close(gate)
			if err := readRawBody(rc.br, &head, false); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(head.Payload), "\n"); n < pieces {
				t.Errorf("body %q, want %d pieces", head.Payload, pieces)
			}
		})
	}
}

// pattern is the byte at offset i of the bodies the large transfers send.
func pattern(i int64) byte { return byte(i % 251) }

// patternBlock holds the pattern from offset 0 over a whole number of
// periods plus one buffer, so that any offset's bytes are one slice of it:
// writing and checking cost a copy and a compare, not a loop per byte
// (which the race detector makes slow).
var patternBlock = func() []byte {
	b := make([]byte, 251*131+64<<10)
	for i := range b {
		b[i] = pattern(int64(i))
	}
	return b
}()

// patternWriter checks that what is written to it is the pattern from 0.
type patternWriter struct {
	n   int64
	bad int64 // offset of the first wrong piece, -1 when none
}

func (w *patternWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		m := min(len(p), 64<<10)
		if off := int(w.n % 251); !bytes.Equal(p[:m], patternBlock[off:off+m]) && w.bad < 0 {
			w.bad = w.n
		}
		w.n += int64(m)
		p = p[m:]
	}
	return n, nil
}

// writePattern writes n bytes of the pattern to w.
func writePattern(w io.Writer, n int64) error {
	const period = 251 * 131 // 32881 bytes: each write starts at offset 0 of the pattern
	for off := int64(0); off < n; off += period {
		if _, err := w.Write(patternBlock[:min(period, n-off)]); err != nil {
			return err
		}
	}
	return nil
}

// largeTransfer is how much the large download and upload move: enough
// that buffering any of it in memory shows.
const largeTransfer = 256 << 20

// A large download and a large upload (header key: no 413, only body rules
// buffer) stream through: the test process's heap stays bounded.
func TestLargeBodiesStreamInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	shards := testutil.StartShards(t, 1, "web")
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.Header().Set("Content-Length", strconv.Itoa(largeTransfer))
			_ = writePattern(w, largeTransfer)
			return
		}
		pw := &patternWriter{bad: -1}
		if _, err := io.Copy(pw, r.Body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %d", pw.n, pw.bad)
	})
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{MaxBodyBytes: 1 << 20}, ring.Config{}, &topo)

	measure := func(t *testing.T, transfer func()) {
		t.Helper()
		before := memStats()
		stop := make(chan struct{})
		peak := heapPeak(stop)
		transfer()
		close(stop)
		after := memStats()
		growth := int64(<-peak) - int64(before.HeapInuse)
		t.Logf("heap in use grew by at most %d KiB; %d KiB allocated in all", growth>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
		if growth > 32<<20 {
			t.Errorf("heap in use grew by %d MiB while %d MiB streamed, want under 32 MiB", growth>>20, largeTransfer>>20)
		}
		if total := after.TotalAlloc - before.TotalAlloc; total > largeTransfer/4 {
			t.Errorf("%d MiB allocated while %d MiB streamed: bodies are being buffered", total>>20, largeTransfer>>20)
		}
	}
	t.Run("download", func(t *testing.T) {
		rc := dialRaw(t, p)
		_ = rc.c.SetDeadline(time.Now().Add(2 * time.Minute))
		measure(t, func() {
			rc.send("GET /big HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
			head, err := readRawHead(rc.br)
			if err != nil {
				t.Fatal(err)
			}
			if head.Status() != 200 || head.Get("Content-Length") != strconv.Itoa(largeTransfer) {
				t.Fatalf("answer %q", head.Head)
			}
			pw := &patternWriter{bad: -1}
			if _, err := io.CopyN(pw, rc.br, largeTransfer); err != nil {
				t.Fatalf("after %d bytes: %v", pw.n, err)
			}
			if pw.bad >= 0 {
				t.Errorf("byte %d of the download is wrong", pw.bad)
			}
		})
	})
	t.Run("upload", func(t *testing.T) {
		rc := dialRaw(t, p)
		_ = rc.c.SetDeadline(time.Now().Add(2 * time.Minute))
		measure(t, func() {
			rc.send("PUT /big HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: " + strconv.Itoa(largeTransfer) + "\r\n\r\n")
			werr := make(chan error, 1)
			go func() { werr <- writePattern(rc.c, largeTransfer) }()
			a, _ := rc.final("PUT")
			if err := recv(t, werr); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d -1", largeTransfer); a.Status() != 200 || string(a.Payload) != want {
				t.Errorf("answer %q, want 200 %q (all bytes, none wrong)", a.Raw(), want)
			}
		})
	})
}

// A shard that declares a huge Content-Length and sends a few bytes costs
// that one client its connection (truncated), nothing else: no memory in
// proportion to the declaration, and the shard and the others still serve.
func TestHugeDeclaredLengthFromShard(t *testing.T) {
	const huge = "68719476736" // 64 GiB
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		switch req.Target() {
		case "/close":
			return "HTTP/1.1 200 OK\r\nContent-Length: " + huge + "\r\n\r\nabc", true
		case "/stall":
			return "HTTP/1.1 200 OK\r\nContent-Length: " + huge + "\r\n\r\nabc", false // and nothing more
		}
		return okResponse("fine"), false
	}))
	others := testutil.StartShards(t, 1, "web")
	topo := rawTopology(shard.addr, others[0].Addr)
	p := startProxy(t, Config{UpstreamTimeout: 300 * time.Millisecond}, ring.Config{Algorithm: ring.Modulus}, topo)

	before := memStats()
	for _, path := range []string{"/close", "/stall"} {
		t.Run(path, func(t *testing.T) {
			rc := dialRaw(t, p)
			rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 0\r\n\r\n")
			head, err := readRawHead(rc.br)
			if err != nil {
				t.Fatal(err)
			}
			if head.Status() != 200 || head.Get("Content-Length") != huge {
				t.Errorf("head %q, want the shard's with its length", head.Head)
			}
			body, err := io.ReadAll(rc.br)
			if string(body) != "abc" || (err != nil && !errIsClosed(err)) {
				t.Errorf("body %q (%v), want the 3 bytes sent, then the connection closed", body, err)
			}
		})
	}
	after := memStats()
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 16<<20 {
		t.Errorf("%d MiB allocated for two answers declaring 64 GiB", grew>>20)
	}
	rc := dialRaw(t, p)
	for _, key := range []string{"0", "1", "0"} {
		a := rc.roundTrip("GET /ok HTTP/1.1\r\nHost: h\r\nX-Shard-Key: "+key+"\r\n\r\n", "GET")
		if a.Status() != 200 {
			t.Errorf("key %s afterwards: %q", key, a.Raw())
		}
	}

	t.Run("declared by the client", func(t *testing.T) {
		// The same declaration in a request streams what comes; a body rule
		// refuses it at once.
		rc := dialRaw(t, p)
		rc.send("PUT /ok HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: " + huge + "\r\n\r\nabc")
		rc.c.Close()
		q := startProxy(t, Config{Keys: mustRules(t, "body:id")}, ring.Config{}, topo)
		rc = dialRaw(t, q)
		rc.send("PUT /ok HTTP/1.1\r\nHost: h\r\nContent-Length: " + huge + "\r\n\r\nabc")
		wantJSON(t, rc.response("PUT"), 413, `{"error":"request body too large","limit":4194304}`)
		rc = dialRaw(t, p)
		if a := rc.roundTrip("GET /ok HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET"); a.Status() != 200 {
			t.Errorf("afterwards: %q", a.Raw())
		}
	})
}

// A client that leaves while its shard works cancels the shard's request,
// whether or not it had a body, and the shard connection is not reused.
func TestClientGoneCancelsShardRequest(t *testing.T) {
	type arrival struct{ remote, body string }
	heads := make(chan struct{}, 4)
	arrived := make(chan arrival, 4)
	cancelled := make(chan time.Time, 4)
	shard := startHTTPShard(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/quick" {
			fmt.Fprint(w, r.RemoteAddr)
			return
		}
		heads <- struct{}{}
		body, _ := io.ReadAll(r.Body) // the whole body, then the slow part
		arrived <- arrival{r.RemoteAddr, string(body)}
		select {
		case <-r.Context().Done():
			cancelled <- time.Now()
		case <-time.After(10 * time.Second):
		}
	})
	p := startProxy(t, Config{UpstreamTimeout: 20 * time.Second}, ring.Config{}, rawTopology(shard))

	for _, tc := range []struct {
		name       string
		head, body string
	}{
		{"no body", "GET /slow HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", ""},
		{"body with the head", "POST /slow HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 5\r\n\r\nhello", ""},
		// Sent once the shard has the head: the body streams, and the
		// copy that streamed it has ended when the client leaves.
		{"body after the head", "POST /slow HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 5\r\n\r\n", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, p)
			rc.send(tc.head)
			recv(t, heads)
			if tc.body != "" {
				rc.send(tc.body)
			}
			var a arrival
			select {
			case a = <-arrived:
			case <-time.After(wireTimeout):
				t.Fatal("the request never reached the shard whole")
			}
			left := time.Now()
			rc.c.Close()
			select {
			case at := <-cancelled:
				if d := at.Sub(left); d > time.Second {
					t.Errorf("the shard's request was cancelled %v after the client left, want within 1s", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the shard's request was not cancelled within 5s of the client leaving")
			}
			rc = dialRaw(t, p)
			q := rc.roundTrip("GET /quick HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n", "GET")
			if q.Status() != 200 || string(q.Payload) == a.remote {
				t.Errorf("next request: %q; the cancelled request's shard connection (%s) must not be reused", q.Raw(), a.remote)
			}
		})
	}
}

// A slow upload is not a slow shard: the upstream timeout counts from the
// end of the request body, not from its head.
func TestSlowUploadIsNotAShardTimeout(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	})
	topo := testutil.Topology(shards)
	const timeout = 300 * time.Millisecond
	p := startProxy(t, Config{UpstreamTimeout: timeout}, ring.Config{}, &topo)
	rc := dialRaw(t, p)
	rc.send("PUT / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 8\r\n\r\n")
	for range 8 {
		time.Sleep(timeout / 3) // the client's pace: the upload takes far longer than the timeout
		rc.send("x")
	}
	if a := rc.response("PUT"); a.Status() != 200 || string(a.Payload) != "8" {
		t.Errorf("answer %q, want 200 8", a.Raw())
	}
}

// A shard that fails while the request body is still streaming is answered
// to the client (502/504), not taken for the client leaving.
func TestShardFailsDuringUpload(t *testing.T) {
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = readRawHead(br)
		_, _ = br.Read(make([]byte, 1)) // one byte of the body, then away
	})
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	rc := dialRaw(t, p)
	rc.send("PUT / HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\nContent-Length: 1000\r\n\r\n")
	rc.send("x")
	wantJSON(t, rc.response("PUT"), 502, `{"error":"shard unreachable","shard":"raw-0"}`)
}

// A response that breaks its framing costs its own client connection only;
// bytes past a message never reach any client, and concurrent clients of
// the same shard get their own answers throughout.
func TestBrokenResponseFramingIsContained(t *testing.T) {
	var (
		mu        sync.Mutex
		lateConns = map[string]net.Conn{} // by path, for the shard to write more later
		goOn      = map[string]*gate{}
		stray     = make(chan struct{}, 1) // the late extra answer is written
		// pause stops the good clients while a test needs the pool to
		// itself: a good request sent on the connection that is about to
		// carry stray bytes would get them, rightly, as its answer.
		pause sync.RWMutex
	)
	for _, path := range []string{"/late-extra", "/late-bad-chunk"} {
		goOn[path] = newGate()
	}
	shard := startRawShard(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			path := req.Target()
			var resp string
			switch path {
			case "/extra":
				resp = okResponse("ok") + okResponse("evil")
			case "/late-extra":
				io.WriteString(c, okResponse("ok"))
				<-goOn[path].wait()
				io.WriteString(c, okResponse("evil"))
				stray <- struct{}{}
				continue
			case "/bad-chunk":
				resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nevil\r\n0\r\n\r\n"
			case "/late-bad-chunk":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
				<-goOn[path].wait()
				resp = "5\r\nhello!!\r\n" + okResponse("evil")
			case "/bad-length":
				resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nevil"
			default:
				resp = okResponse("good " + path)
			}
			mu.Lock()
			lateConns[path] = c
			mu.Unlock()
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	for _, g := range goOn {
		g.openAtEnd(t)
	}
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))

	// Good clients, all along, on the same shard.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad []string
	for g := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				path := fmt.Sprintf("/good/%d/%d", g, i)
				pause.RLock()
				c, err := net.Dial("tcp", p.rawAddr())
				if err != nil {
					pause.RUnlock()
					mu.Lock()
					bad = append(bad, err.Error())
					mu.Unlock()
					return
				}
				_ = c.SetDeadline(time.Now().Add(wireTimeout))
				io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
				a, err := readRawResponse(bufio.NewReader(c), "GET")
				c.Close()
				pause.RUnlock()
				if err != nil || string(a.Payload) != "good "+path {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %q %v", path, a.Raw(), err))
					mu.Unlock()
				}
			}
		})
	}
	defer func() {
		stop()
		wg.Wait()
		for _, b := range bad {
			t.Errorf("a good client got a wrong answer: %s", b)
		}
	}()

	get := func(t *testing.T, path string) *rawClient {
		rc := dialRaw(t, p)
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		return rc
	}
	// afterwards checks the client connection carries no stray bytes:
	// closed, or ready for a request that gets its own answer.
	afterwards := func(t *testing.T, rc *rawClient) {
		t.Helper()
		if _, err := io.WriteString(rc.c, "GET /good/after HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n"); err != nil {
			return // closed
		}
		a, err := readRawResponse(rc.br, "GET")
		if err == nil && string(a.Payload) != "good /good/after" {
			t.Errorf("the next answer on this connection: %q", a.Raw())
		}
	}
	t.Run("more than Content-Length", func(t *testing.T) {
		rc := get(t, "/extra")
		if a := rc.response("GET"); string(a.Payload) != "ok" {
			t.Errorf("answer %q", a.Raw())
		}
		afterwards(t, rc)
	})
	t.Run("more than Content-Length, later", func(t *testing.T) {
		pause.Lock()
		defer pause.Unlock()
		rc := get(t, "/late-extra")
		if a := rc.response("GET"); string(a.Payload) != "ok" {
			t.Errorf("answer %q", a.Raw())
		}
		// The shard writes its stray answer once its connection is back in
		// the pool (the warmest there, taken first); the next request must
		// not take that answer for its own.
		waitUntil(t, wireTimeout, "the connection is pooled", func() bool { return p.upstreamsAllIdle(0) })
		goOn["/late-extra"].open()
		recv(t, stray)
		afterwards(t, dialRaw(t, p))
		afterwards(t, rc)
	})
	t.Run("invalid chunk", func(t *testing.T) {
		// The whole broken answer comes in one read: nothing of it has
		// reached the client when the error shows, so the client gets a 502.
		rc := get(t, "/bad-chunk")
		wantJSON(t, rc.response("GET"), 502, `{"error":"invalid response from shard","shard":"raw-0"}`)
		afterwards(t, rc)
	})
	t.Run("invalid chunk, later", func(t *testing.T) {
		rc := get(t, "/late-bad-chunk")
		head, err := readRawHead(rc.br)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := rc.br.ReadString('\n')
		data, _ := rc.br.ReadString('\n')
		if line+data != "5\r\nhello\r\n" {
			t.Fatalf("first chunk %q", line+data)
		}
		goOn["/late-bad-chunk"].open()
		rest, err := io.ReadAll(rc.br)
		if err != nil && !errIsClosed(err) {
			t.Fatal(err)
		}
		if strings.Contains(string(rest), "evil") || strings.Contains(string(rest), "0\r\n\r\n") {
			t.Errorf("after the broken chunk the client got %q, want the connection closed, the body unfinished (head %q)", rest, head.Head)
		}
	})
	t.Run("conflicting lengths", func(t *testing.T) {
		rc := get(t, "/bad-length")
		wantJSON(t, rc.response("GET"), 502, `{"error":"invalid response from shard","shard":"raw-0"}`)
		afterwards(t, rc)
	})
}
