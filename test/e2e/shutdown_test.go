package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// longOutage is how long the API server refuses connections before the
// proxies get SIGTERM: long enough that client-go's watch retry backoff
// (0.8 s doubling to 30 s, with jitter) is in one of its long waits.
const longOutage = 30 * time.Second

// shutdownSlack is what exiting may take beyond --shutdown-timeout on two
// busy cores with a race-detector build: closing the listeners and the
// watches, and the process exit itself (testutil.ChildEnv turns off the
// race detector's sleep at exit).
const shutdownSlack = 3 * time.Second

// testShutdownDuringOutage: SIGTERM while the API server has been down for a
// while. The README promises that in-flight requests get --shutdown-timeout
// and then the process exits, and the Deployment's grace period (preStop
// 5 s + --shutdown-timeout 15 s within 30 s) is sized on that promise: the
// proxy must exit within --shutdown-timeout however its Kubernetes watches
// are doing. Three proxies, since each one's backoff is jittered.
func testShutdownDuringOutage(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 2)
	const shutdownTimeout = 5 * time.Second // startProxy's --shutdown-timeout
	var ps []*proxy
	for _, name := range []string{"a", "b", "c"} {
		p := startProxy(t, name, env.Kubeconfig, f.ns, "--shutdown-timeout", shutdownTimeout.String())
		p.waitShards(t, proxyTimeout, "2 ready shards", f.allReady(2))
		ps = append(ps, p)
	}

	env.StopAPIServer()
	defer env.StartAPIServer(t)
	// The outage itself, checking that the proxies stay ready meanwhile.
	deadline := time.Now().Add(longOutage)
	tick := time.NewTicker(time.Second)
	for time.Now().Before(deadline) {
		<-tick.C
		for _, p := range ps {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := p.readyz(ctx); err != nil {
				t.Errorf("proxy %s during the outage: %v", p.name, err)
			}
			cancel()
		}
	}
	tick.Stop()

	sent := time.Now()
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		p.stop(t) // waits for the exit, up to stopTimeout, then kills
		took := p.exitedAt.Sub(sent)
		t.Logf("proxy %s exited %v after SIGTERM, %v into the outage", p.name, took.Round(time.Millisecond), longOutage)
		if limit := shutdownTimeout + shutdownSlack; took > limit {
			t.Errorf("proxy %s took %v to exit after SIGTERM with the API server down; want at most --shutdown-timeout %v + %v. "+
				"Its last lines:\n%s", p.name, took.Round(time.Millisecond), shutdownTimeout, shutdownSlack, p.logs.Tail(4))
		}
	}
}
