package e2e

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// outage is how long the API server stays down: the scenario itself.
const outage = 10 * time.Second

// followTimeout bounds how long after the API server is back a scale must
// show in /shards: client-go retries a failed watch with a backoff that
// grows to 30 s, so a change right after an outage can take that long.
const followTimeout = 60 * time.Second

// testAPIServerOutage: the API server is down for 10 s. Meanwhile the proxy
// stays ready with its last topology and every request to the (ready)
// shards succeeds; once the API server is back, the proxy follows a scale.
func testAPIServerOutage(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	p := startProxy(t, "p", env.Kubeconfig, f.ns)
	before := p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	keys := sampleKeys(200)
	g := startGuard(t, p, keys, ownerCheck(owners(t, 3, keys)))

	env.StopAPIServer()
	stopped := time.Now()
	restarted := false
	defer func() {
		if !restarted { // the next test, if any, needs it
			env.StartAPIServer(t)
		}
	}()
	// Wait out the outage, checking all along that the proxy keeps its
	// table and stays ready.
	tick := time.NewTicker(250 * time.Millisecond)
	checks := 0
	for time.Since(stopped) < outage {
		<-tick.C
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := p.readyz(ctx)
		if err == nil {
			var now shardsAnswer
			if now, err = p.shards(ctx); err == nil && !reflect.DeepEqual(now, before) {
				err = fmt.Errorf("/shards changed during the outage:\nbefore %+v\nnow    %+v", before, now)
			}
		}
		cancel()
		if err != nil {
			t.Errorf("%v into the outage: %v", time.Since(stopped).Round(time.Millisecond), err)
		}
		checks++
	}
	tick.Stop()
	env.StartAPIServer(t)
	restarted = true
	back := time.Now()
	t.Logf("API server down for %v; %d checks of /readyz and /shards during the outage",
		back.Sub(stopped).Round(time.Millisecond), checks)
	g.stop(t, "requests to ready shards, before, during and right after the outage")

	env.Scale(t, f.ns, "web", 4)
	scaled := time.Now()
	p.waitShards(t, followTimeout, "replicas 4 after the outage", func(a shardsAnswer) error {
		if a.Replicas != 4 {
			return fmt.Errorf("replicas %d", a.Replicas)
		}
		return nil
	})
	t.Logf("outage recovery: scale followed %v after the scale call, %v after the API server was ready again",
		time.Since(scaled).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	// Routing follows the formula for the new N at once, whether or not
	// web-3 runs yet.
	own := owners(t, 4, keys)
	ctx, cancel := context.WithTimeout(context.Background(), proxyTimeout)
	defer cancel()
	for _, k := range keys {
		loc, err := p.locate(ctx, k)
		if err != nil {
			t.Fatalf("/locate %q after the outage: %v", k, err)
		}
		if loc.Shard != own[k] {
			t.Fatalf("/locate %q after the outage = %s, want %s (jump over 4)", k, loc.Shard, own[k])
		}
	}
	// The new pod's start depends on the restarted API server's watch cache,
	// the controller manager and the test kubelet catching up, each with its
	// own backoff; that is the test cluster's recovery, not the proxy's, so
	// it is waited for only as long as followTimeout and then reported.
	if err := waitFor(followTimeout, func() error {
		if _, ok := f.kubelet.PodIP("web-3"); !ok {
			return fmt.Errorf("web-3 does not run yet")
		}
		return nil
	}); err != nil {
		t.Logf("web-3 not running %v after the scale (test cluster still recovering): skipping the sweep", followTimeout)
		return
	}
	f.waitPods(t, 4)
	p.waitShards(t, proxyTimeout, "4 ready shards", f.allReady(4))
	t.Logf("web-3 serving %v after the scale call", time.Since(scaled).Round(time.Millisecond))
	f.sweep(t, p, keys, own)
}

// waitFor polls cond until it holds or timeout passes, returning its last error.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
