package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// sseEvent is one server-sent event as a client reads it.
type sseEvent struct {
	event, id, data string
	comment         bool // a comment line (heartbeat), nothing else
}

// sseReader reads a /shards?watch=1 stream over a real connection.
type sseReader struct {
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
}

func openWatch(t *testing.T, url, token string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/shards?watch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &sseReader{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(r.close)
	return r
}

func (r *sseReader) close() {
	r.cancel()
	r.resp.Body.Close()
}

// next reads the next event or comment, failing the test after timeout.
func (r *sseReader) next(t *testing.T, timeout time.Duration) sseEvent {
	t.Helper()
	type result struct {
		ev  sseEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var ev sseEvent
		for {
			line, err := r.br.ReadString('\n')
			if err != nil {
				ch <- result{err: err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch name, value, _ := strings.Cut(line, ": "); {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- result{ev: ev}
					return
				}
			case strings.HasPrefix(line, ":"):
				ev.comment = true
			case name == "event":
				ev.event = value
			case name == "id":
				ev.id = value
			case name == "data":
				ev.data = value
			}
		}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("reading the watch stream: %v", res.err)
		}
		return res.ev
	case <-time.After(timeout):
		r.close() // ends the reader goroutine
		<-ch
		t.Fatalf("no event within %v", timeout)
		return sseEvent{}
	}
}

// nextTopology skips heartbeats and returns the next topology event, decoded.
func (r *sseReader) nextTopology(t *testing.T) (sseEvent, ShardsAnswer) {
	t.Helper()
	for {
		ev := r.next(t, 5*time.Second)
		if ev.comment && ev.event == "" {
			continue
		}
		var a ShardsAnswer
		if ev.event != "topology" || json.Unmarshal([]byte(ev.data), &a) != nil || ev.id != strconv.FormatUint(a.Generation, 10) {
			t.Fatalf("event %+v: want event topology, id = the data's generation", ev)
		}
		return ev, a
	}
}

func TestWatchStreamsEveryAppliedTopology(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{WatchHeartbeat: time.Hour}, &topo)

	w := openWatch(t, a.url, "")
	if ct := w.resp.Header.Get("Content-Type"); w.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("watch answered %d %q, want 200 text/event-stream", w.resp.StatusCode, ct)
	}
	_, first := w.nextTopology(t)
	plain := testutil.Decode[ShardsAnswer](t, call(t, "GET", a.url+"/shards", nil, nil))
	if first.Generation != 1 || first.Fingerprint != plain.Fingerprint || plain.Generation != 1 || len(first.Shards) != 3 {
		t.Fatalf("first event %+v, /shards %+v: want generation 1 and the /shards document", first, plain)
	}

	// A readiness change, then a scale: one event each, in order.
	topo.Shards[1].Ready = false
	a.apply(t, topo)
	_, got := w.nextTopology(t)
	if got.Generation != 2 || got.Shards[1].Ready || got.Ready != 2 {
		t.Fatalf("after web-1 went not ready: %+v", got)
	}
	more := testutil.StartShards(t, 1, "x")
	topo.Replicas = 4
	topo.Shards = append(topo.Shards, watch.Shard{Ordinal: 3, Name: "web-3", Addr: more[0].Addr, Ready: true})
	a.apply(t, topo)
	_, got = w.nextTopology(t)
	if got.Generation != 3 || got.Replicas != 4 || got.Fingerprint == first.Fingerprint {
		t.Fatalf("after the scale to 4: %+v", got)
	}

	// A second watcher starts at the current generation.
	w2 := openWatch(t, a.url, "")
	if _, got := w2.nextTopology(t); got.Generation != 3 || got.Replicas != 4 {
		t.Fatalf("a new watcher's first event: %+v, want generation 3", got)
	}
}

func TestWatchHeartbeat(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 1, "web"))
	a := startAdmin(t, Config{WatchHeartbeat: 20 * time.Millisecond}, &topo)
	w := openWatch(t, a.url, "")
	w.nextTopology(t)
	for range 3 {
		if ev := w.next(t, 5*time.Second); !ev.comment || ev.event != "" {
			t.Fatalf("got %+v while nothing changed, want a comment line", ev)
		}
	}
}

// openStuckWatch opens a watch on a connection with a small receive
// buffer whose answer is read only when the returned function is called:
// until then the watcher reads nothing, and the stream backs up to the
// server.
func openStuckWatch(t *testing.T, url string) func() *sseReader {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := io.WriteString(nc, "GET /shards?watch=1 HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return func() *sseReader {
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &sseReader{resp: resp, br: bufio.NewReader(resp.Body), cancel: func() { nc.Close() }}
	}
}

// TestWatchSlowWatcher: a watcher that does not read holds up neither
// Apply nor other watchers, and when it reads again it gets the latest
// topology, skipping what it missed.
func TestWatchSlowWatcher(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	for i := 2; i < 200; i++ { // large events fill the socket buffers sooner
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: shards[i%2].Addr, Ready: true})
	}
	topo.Replicas = len(topo.Shards)
	a := startAdmin(t, Config{WatchHeartbeat: time.Hour}, &topo)
	stuck := openStuckWatch(t, a.url)
	fast := openWatch(t, a.url, "")
	fast.nextTopology(t)

	const changes = 300
	start := time.Now()
	for i := range changes {
		topo.Shards[0].Ready = i%2 == 1
		a.apply(t, topo)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%d applies took %v with a watcher that does not read", changes, d)
	}
	last := uint64(changes + 1)
	for _, w := range []*sseReader{fast, stuck()} {
		var seen []uint64
		for {
			_, got := w.nextTopology(t)
			if len(seen) > 0 && got.Generation <= seen[len(seen)-1] {
				t.Fatalf("generation %d after %d", got.Generation, seen[len(seen)-1])
			}
			seen = append(seen, got.Generation)
			if got.Generation == last {
				if !got.Shards[0].Ready {
					t.Errorf("the last event has web-0 not ready, want the last applied (ready)")
				}
				break
			}
		}
		t.Logf("a watcher saw %d of %d changes (the rest coalesced)", len(seen), changes+1)
	}
}

func TestWatchAuthAndRefusals(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := NewTokenAuth(tokenFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAdmin(t, Config{Auth: auth}, nil)
	if r := call(t, "GET", a.url+"/shards?watch=1", nil, nil); r.Status != 401 {
		t.Errorf("watch without the token: %v, want 401", r)
	}
	bearer := http.Header{"Authorization": {"Bearer s3cret"}}
	if r := call(t, "GET", a.url+"/shards?watch=1", nil, bearer); r.Status != 503 || !strings.Contains(string(r.Body), "no shards") {
		t.Errorf("watch before any topology: %v, want 503 no shards", r)
	}
	a.apply(t, testutil.Topology(testutil.StartShards(t, 1, "web")))
	w := openWatch(t, a.url, "s3cret")
	w.nextTopology(t)

	// Drain (shutdown) ends the stream: the client reconnects elsewhere.
	a.Drain()
	done := make(chan error, 1)
	go func() {
		_, err := w.br.ReadString(0)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("stream after Drain: %v, want its end", err)
		}
	case <-time.After(5 * time.Second):
		w.close()
		<-done
		t.Fatal("the watch stream did not end after Drain")
	}
}
