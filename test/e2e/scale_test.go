package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// convergence is how long after a scale (the API call) the proxy showed it.
type convergence struct {
	from, to int
	// shards: /shards shows the new replicas.
	shards time.Duration
	// route: a key that moves is routed to its new owner (X-Shard), even
	// if that pod is not ready yet (then with a 503).
	route time.Duration
	// serve: that key gets a 200 from its new owner; for a scale up this
	// includes starting the new pod.
	serve time.Duration
}

// testScale: after each scale (3→4, 4→2, 2→3, five times) every key of a
// sample routes per the formula for the new N, and the time from the API
// change to the proxy following it is measured and logged. The target is a
// p99 of 1 s; it is logged, not asserted, since a loaded machine can miss
// it without anything being wrong.
func testScale(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	p := startProxy(t, "p", env.Kubeconfig, f.ns)
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	keys := sampleKeys(200)
	f.sweep(t, p, keys, owners(t, 3, keys))

	const cycles = 5
	var all []convergence
	n := 3
	for c := range cycles {
		for _, to := range []int{4, 2, 3} {
			cv := f.scaleAndMeasure(t, p, keys, n, to)
			t.Logf("cycle %d: %d -> %d: /shards after %v, routed after %v, served after %v",
				c+1, n, to, ms(cv.shards), ms(cv.route), ms(cv.serve))
			all = append(all, cv)
			n = to
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	var shards, route, serve, serveUp []time.Duration
	for _, cv := range all {
		shards = append(shards, cv.shards)
		route = append(route, cv.route)
		serve = append(serve, cv.serve)
		if cv.to > cv.from {
			serveUp = append(serveUp, cv.serve)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "convergence over %d scales (p50 / p99 / max):\n", len(all))
	for _, row := range []struct {
		what string
		ds   []time.Duration
	}{
		{"/shards shows new replicas", shards},
		{"moved key routed to new owner", route},
		{"moved key served by new owner", serve},
		{"  of which scale-ups (pod start)", serveUp},
	} {
		fmt.Fprintf(&b, "  %-34s %8v / %8v / %8v\n", row.what, ms(percentile(row.ds, 50)), ms(percentile(row.ds, 99)), ms(percentile(row.ds, 100)))
	}
	t.Log(b.String())
	if p99 := percentile(route, 99); p99 > time.Second {
		t.Logf("NOTE: routing p99 %v is above the 1 s target", ms(p99))
	}
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// scaleAndMeasure scales web from n to to, measures how long the proxy
// takes to follow, then waits for the pods and checks every key.
func (f *fixture) scaleAndMeasure(t *testing.T, p *proxy, keys []string, from, to int) convergence {
	t.Helper()
	oldOwn, newOwn := owners(t, from, keys), owners(t, to, keys)
	probe := ""
	for _, k := range keys {
		if oldOwn[k] != newOwn[k] {
			probe = k
			break
		}
	}
	if probe == "" {
		t.Fatalf("no key of the sample moves from %d to %d shards", from, to)
	}

	cv := convergence{from: from, to: to}
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	// Two pollers, so that a request hanging on a pod that is going away
	// cannot delay the other measurement.
	shardsDone, routeDone := make(chan struct{}), make(chan struct{})
	begin := time.Now()
	f.env.Scale(t, f.ns, "web", int32(to))
	go func() {
		defer close(shardsDone)
		poll(ctx, func() bool {
			a, err := p.shards(ctx)
			if err == nil && a.Replicas == to {
				cv.shards = time.Since(begin)
				return true
			}
			return false
		})
	}()
	go func() {
		defer close(routeDone)
		f.probeRoute(ctx, p, probe, newOwn[probe], begin, &cv)
	}()
	<-shardsDone
	<-routeDone
	if cv.shards == 0 || cv.serve == 0 {
		t.Fatalf("scale %d -> %d not followed within %v: %+v; /shards: %v", from, to, podTimeout, cv, describeShards(p))
	}

	f.waitPods(t, to)
	p.waitShards(t, proxyTimeout, fmt.Sprintf("%d ready shards", to), f.allReady(to))
	f.sweep(t, p, keys, newOwn)
	return cv
}

// probeRoute sends key every 2 ms, each request on its own, until one gets
// a 200 from newOwner, and records in cv the earliest completion routed to
// newOwner (route) and answered by it (serve). Requests do not wait for one
// another, so one hanging on a pod that is going away (its IP no longer
// answers) does not delay the measurement.
func (f *fixture) probeRoute(ctx context.Context, p *proxy, key, newOwner string, begin time.Time, cv *convergence) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inFlight = make(chan struct{}, 64)
		served   = make(chan struct{})
		once     sync.Once
	)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-served:
			cancel()
		case <-tick.C:
			select {
			case inFlight <- struct{}{}:
			default:
				continue // 64 hanging already: wait for one
			}
			wg.Go(func() {
				defer func() { <-inFlight }()
				a, err := p.sendClient(ctx, client, key)
				at := time.Since(begin)
				if err != nil || a.Header.Get("X-Shard") != newOwner {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if cv.route == 0 || at < cv.route {
					cv.route = at
				}
				if a.Status == http.StatusOK && a.Header.Get("X-Pod") == newOwner {
					if cv.serve == 0 || at < cv.serve {
						cv.serve = at
					}
					once.Do(func() { close(served) })
				}
			})
		}
	}
	wg.Wait()
}

// poll calls cond every 2 ms until it returns true or ctx ends.
func poll(ctx context.Context, cond func() bool) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func describeShards(p *proxy) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := p.shards(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", a)
}
