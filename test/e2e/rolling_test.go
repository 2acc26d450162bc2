package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testRollingUpdate: a rolling update of a 3-pod StatefulSet (a template
// change, so the controller replaces the pods one by one, each terminating
// gracefully) under steady load on all keys. A proxy with --owner-wait=15s
// answers every request 2xx from the key's owner; a proxy without it, in
// the same run, shows the 503s owner-wait removes (so the test can fail).
func testRollingUpdate(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3, kubeenv.WithGracefulTermination(time.Second))
	held := startProxy(t, "held", env.Kubeconfig, f.ns, "--owner-wait", "15s")
	plain := startProxy(t, "plain", env.Kubeconfig, f.ns)
	for _, p := range []*proxy{held, plain} {
		p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	}
	keys := sampleKeys(60)
	own := owners(t, 3, keys)
	gHeld := startGuard(t, held, keys, ownerCheck(own))
	gPlain := startGuard(t, plain, keys, ownerCheck(own))
	time.Sleep(300 * time.Millisecond) // some load before the update starts

	began := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"e2e/restarted-at":%q}}}}}`, began.Format(time.RFC3339Nano))
	if _, err := env.Client.AppsV1().StatefulSets(f.ns).Patch(context.Background(), "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitRolledOut(t, 3)
	t.Logf("rolling update of 3 pods took %v", time.Since(began).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)

	gPlain.cancel()
	<-gPlain.done
	gPlain.mu.Lock()
	plain503 := gPlain.statuses[503]
	t.Logf("without --owner-wait: %d requests, answers by status %v", gPlain.total, gPlain.statuses)
	gPlain.mu.Unlock()
	if plain503 == 0 {
		t.Errorf("without --owner-wait the rolling update gave no 503: the test did not exercise the restart window")
	}
	gHeld.mu.Lock()
	lat := slices.Clone(gHeld.latency)
	gHeld.mu.Unlock()
	gHeld.stop(t, "with --owner-wait=15s") // fails on any non-2xx or wrong owner
	slices.Sort(lat)
	t.Logf("with --owner-wait: request latency p50 %v, p99 %v, max %v",
		percentile(lat, 50).Round(time.Microsecond), percentile(lat, 99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	t.Logf("held proxy: %s", held.metricLines(t, "shard_proxy_owner_wait"))
}

// waitRolledOut waits until the StatefulSet's pods all run its current
// template and are ready.
func (f *fixture) waitRolledOut(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(3 * podTimeout)
	for {
		sts, err := f.env.Client.AppsV1().StatefulSets(f.ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err == nil {
			s := sts.Status
			if s.ObservedGeneration >= sts.Generation && s.UpdateRevision != "" && s.CurrentRevision == s.UpdateRevision &&
				s.UpdatedReplicas == n && s.ReadyReplicas == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rolling update did not finish within %v: %+v, %v", 3*podTimeout, sts.Status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricLines returns the proxy's /metrics lines that start with prefix.
func (p *proxy) metricLines(t *testing.T, prefix string) string {
	t.Helper()
	a, err := p.do(context.Background(), "GET", p.admin+"/metrics", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(a.Body), "\n") {
		if strings.HasPrefix(l, prefix) && !strings.Contains(l, "_bucket") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// testPodReplacedHeld: a pod deleted and recreated (a new IP) under load
// on its keys, with --owner-wait: every request is answered 200 by the
// key's owner, the held ones by the new pod at its new IP.
func testPodReplacedHeld(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3, kubeenv.WithGracefulTermination(500*time.Millisecond))
	p := startProxy(t, "p", env.Kubeconfig, f.ns, "--owner-wait", "15s")
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	keys := sampleKeys(200)
	own := owners(t, 3, keys)
	mine, _ := keysOf(keys, own, "web-1")
	g := startGuard(t, p, mine, ownerCheck(own))
	newIP := f.deletePod(t, "web-1")
	p.waitShards(t, proxyTimeout, "web-1 ready at its new IP", shardIs("web-1", true, f.podAddr("web-1")))
	g.stop(t, "web-1 replaced under load, --owner-wait=15s")
	ans, err := p.send(context.Background(), mine[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := routedTo(ans, mine[0], "web-1", newIP); err != nil {
		t.Error(err)
	}
	t.Logf("held: %s", p.metricLines(t, "shard_proxy_owner_waits_total"))
}
