package main

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// result is the outcome of a request made in the background.
type result struct {
	testutil.Answer
	err error
}

// sendSlow starts GET /slow with key through p and returns where its result
// will arrive. The test makes the owning shard hold it (Shard.Hold).
func sendSlow(t *testing.T, p *proxyProc, key string) <-chan result {
	t.Helper()
	req := testutil.NewRequest(t, http.MethodGet, p.dataURL("/slow"), nil)
	req.Header.Set("X-Shard-Key", key)
	res := make(chan result, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		a, err := testutil.Read(p.client, req)
		res <- result{a, err}
	}()
	// The request must end before the test's cleanups close the client and
	// the shards. When the test stopped early, the process still runs and
	// holds it: killing the process ends it.
	t.Cleanup(func() {
		p.kill()
		select {
		case <-finished:
		case <-time.After(waitTimeout):
			t.Errorf("the background request did not end %v after the test", waitTimeout)
		}
	})
	return res
}

// waitArrived waits until s holds a request.
func waitArrived(t *testing.T, s *testutil.Shard) {
	t.Helper()
	select {
	case <-s.Arrived():
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not receive the slow request within %v", s.Name, waitTimeout)
	}
}

// TestGracefulShutdown sends SIGTERM while a request is in flight: the proxy
// must stop taking new connections and turn unready, let the request finish,
// then exit with status 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	shards := testutil.StartShards(t, 2, "shard")
	p := startProxy(t, "--ring=modulus", "--shards", shardList(shards))

	shards[1].Hold()
	res := sendSlow(t, p, "1") // owned by shard-1
	waitArrived(t, shards[1])
	p.signal(t, syscall.SIGTERM)

	eventually(t, waitTimeout, "/readyz stops answering 200", func() bool {
		resp, err := p.client.Get(p.adminURL("/readyz"))
		if err != nil {
			return true // the admin plane is already closed
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	eventually(t, waitTimeout, "new connections to the data port are refused", func() bool {
		return refused(p.data)
	})
	if p.exited() {
		t.Fatal("shard-proxy exited while a request was in flight")
	}

	shards[1].Release()
	select {
	case r := <-res:
		if r.err != nil || r.Status != http.StatusOK || r.JSON(t)["shard"] != "shard-1" || r.Header.Get("X-Shard") != "shard-1" {
			t.Errorf("in-flight request got %v (err %v), want 200 from shard-1", r.Answer, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the in-flight request did not complete within %v of its release", waitTimeout)
	}
	if code := p.waitExit(t, waitTimeout); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// TestShutdownTimeout checks that --shutdown-timeout bounds a request that
// never finishes: the process waits that long, then exits with status 0.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	shards := testutil.StartShards(t, 1, "shard")
	p := startProxy(t, "--shards", shardList(shards), "--shutdown-timeout", "1s")

	shards[0].Hold()
	sendSlow(t, p, "any") // never released
	waitArrived(t, shards[0])
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.waitExit(t, 5*time.Second)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("exited %v after SIGTERM; want it to give the in-flight request about 1s", took)
	}
}

// runInProcess runs the proxy in this process with args, as cli would after
// parsing, and returns its logs and the channel run's error arrives on.
func runInProcess(t *testing.T, ctx context.Context, args ...string) (*testutil.Log, <-chan error) {
	t.Helper()
	var o options
	args = append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	from, err := parseFlags(newFlagSet(&o), args, envOf(nil))
	o.from = from
	if err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	logs := testutil.NewLog()
	done := make(chan error, 1)
	go func() { done <- run(ctx, &o, logs, nil) }()
	return logs, done
}

// TestRunStopsWhenCancelledAtOnce cancels run's context before it has
// started serving, as a SIGTERM during startup does: run must still return.
// With one P, the goroutines that run starts do not run before it reaches
// its shutdown, which makes the order that matters certain instead of
// likely.
func TestRunStopsWhenCancelledAtOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, source := range [][]string{
		{"--shards", testutil.DeadAddr(t)},
		{"--demo", "1"},
	} {
		t.Run(source[0], func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			logs, done := runInProcess(t, ctx, source...)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run = %v, want nil", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("run did not return within %v of a cancelled context; logs:\n%s", 3*time.Second, logs)
			}
		})
	}
}

// TestRunLeavesNothingBehind runs the proxy in process, routes a request
// through it, cancels, and checks that run returns and every goroutine it
// started has ended.
func TestRunLeavesNothingBehind(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, done := runInProcess(t, ctx, "--demo", "2")
	rec := waitLog(t, logs, "shard-proxy starting", nil, startTimeout)
	listen, _ := rec["listen"].(string)
	waitLog(t, logs, "topology applied", nil, waitTimeout)

	// A client of its own, closed before the leak check below.
	client := &http.Client{Transport: &http.Transport{}, Timeout: waitTimeout}
	req := testutil.NewRequest(t, http.MethodGet, "http://"+listen+"/x", nil)
	req.Header.Set("X-Shard-Key", "k")
	a := testutil.Do(t, client, req)
	client.CloseIdleConnections()
	if a.Status != http.StatusOK || !strings.Contains(string(a.Body), `"shard":"demo-`) {
		t.Fatalf("got %v, want 200 from a demo shard", a)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("run did not return within %v of cancel; logs:\n%s", waitTimeout, logs)
	}
	goleak.VerifyNone(t, testutil.LeakOptions(before)...)
}
