package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// countingShard is a real shard server that counts the connections it
// accepted and the most requests it held at once; when gate is set, every
// request waits for it to close.
type countingShard struct {
	srv      *httptest.Server
	conns    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	gate     chan struct{}
}

func startCountingShards(t *testing.T, n int, gate chan struct{}) ([]*countingShard, watch.Topology) {
	t.Helper()
	shards := make([]*countingShard, n)
	topo := watch.Topology{Replicas: n}
	for i := range shards {
		s := &countingShard{gate: gate}
		s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
		s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}
		s.srv.Start()
		t.Cleanup(s.srv.Close)
		shards[i] = s
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: s.srv.Listener.Addr().String(), Ready: true})
	}
	return shards, topo
}

func (s *countingShard) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if s.gate != nil {
		<-s.gate
	}
	_, _ = w.Write([]byte("ok"))
}

// broadcastAll runs n broadcasts at once and returns what went wrong with
// those that did not reach every shard. Safe to call from any goroutine.
func broadcastAll(client *http.Client, url string, n, shards int) []error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := client.Post(url+"/broadcast/cache/evict", "application/json", nil)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var rep BroadcastReport
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				errs <- err
				return
			}
			if resp.StatusCode != 200 || rep.Succeeded != shards {
				errs <- fmt.Errorf("status %d, %d of %d shards succeeded: %+v", resp.StatusCode, rep.Succeeded, shards, rep.Shards)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return all
}

// Concurrent broadcasts reuse the pooled shard connections: rounds of 20
// broadcasts at once open at most 20 connections to each shard in all (one
// per broadcast in flight there), however many rounds run. With a small
// idle pool per shard (it was 4), every round closed most of them and
// dialed them again: 20 + 16 per later round.
func TestConcurrentBroadcastsReuseShardConnections(t *testing.T) {
	const shardCount, broadcasts, rounds = 8, 20, 4
	shards, topo := startCountingShards(t, shardCount, nil)
	a := startAdmin(t, Config{Logger: slog.New(slog.DiscardHandler)}, &topo)
	client := testutil.Client(t)
	for round := range rounds {
		if errs := broadcastAll(client, a.url, broadcasts, shardCount); errs != nil {
			t.Fatalf("round %d: %d broadcasts failed, the first: %v", round+1, len(errs), errs[0])
		}
	}
	for i, s := range shards {
		if got := s.conns.Load(); got > broadcasts {
			t.Errorf("shard %d: %d connections for %d rounds of %d concurrent broadcasts, want at most %d: later rounds dialed again instead of reusing the pool",
				i, got, rounds, broadcasts, broadcasts)
		}
	}
}

// heldBroadcasts starts n broadcasts through the admin plane to
// shardCount counting shards that hold every request until release; the
// caller waits for each shard to hold what it expects (heldBy), then
// releases them and gets the broadcasts' errors.
func heldBroadcasts(t *testing.T, shardCount, n int) (shards []*countingShard, release func() []error) {
	t.Helper()
	gate := make(chan struct{})
	shards, topo := startCountingShards(t, shardCount, gate)
	a := startAdmin(t, Config{Logger: slog.New(slog.DiscardHandler)}, &topo)
	client := testutil.Client(t)
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		errs = broadcastAll(client, a.url, n, shardCount)
	}()
	return shards, func() []error {
		close(gate)
		<-done
		return errs
	}
}

// heldBy reports false when, within 10 s, some shard does not hold want
// requests at once; i is that shard.
func heldBy(shards []*countingShard, want int64) (i int, ok bool) {
	deadline := time.Now().Add(10 * time.Second)
	for i, s := range shards {
		for s.inFlight.Load() < want {
			if time.Now().After(deadline) {
				return i, false
			}
			time.Sleep(time.Millisecond)
		}
	}
	return 0, true
}

// More concurrent broadcasts than BroadcastConnsPerShard wait for a
// connection to each shard: no shard holds more broadcast requests or
// connections than that at once, and every broadcast still succeeds.
func TestBroadcastConnectionsPerShardAreBounded(t *testing.T) {
	const shardCount, bound = 4, BroadcastConnsPerShard
	shards, release := heldBroadcasts(t, shardCount, bound+8)
	// Hold every request until each shard has as many as the bound allows
	// at once, so that any beyond the bound would pile up there too.
	i, ok := heldBy(shards, bound)
	errs := release()
	if !ok {
		t.Fatalf("shard %d holds %d requests after 10s, want %d", i, shards[i].inFlight.Load(), bound)
	}
	if errs != nil {
		t.Fatalf("%d broadcasts failed, the first: %v", len(errs), errs[0])
	}
	for i, s := range shards {
		if m, c := s.maxIn.Load(), s.conns.Load(); m > bound || c > bound {
			t.Errorf("shard %d: %d requests at once over %d connections, want at most %d of each", i, m, c, bound)
		}
	}
}

// By default a broadcast contacts every shard of a large table at once (one
// wave, so it takes about one shard round trip): every shard holds its
// request before any is answered. With the old default of 64 at once, the
// shards past the 64th got nothing until others answered.
func TestBroadcastReachesEveryShardInOneWave(t *testing.T) {
	shards, release := heldBroadcasts(t, 80, 1)
	i, ok := heldBy(shards, 1)
	errs := release()
	if !ok {
		t.Fatalf("shard %d got no request in 10s while the others held theirs: the broadcast went out in waves", i)
	}
	if errs != nil {
		t.Fatalf("broadcast failed: %v", errs[0])
	}
}
