package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testTwoProxiesAgree: two proxy processes watching the same StatefulSet
// agree on every key after every change: a scale up, a pod turning not
// ready, that pod replaced at a new IP, ready again, a scale down, and back
// to the first size. They show the same /shards, with the same fingerprint,
// and /locate gives the same shard for each key of a sample, the one the
// formula gives. (Between two changes they may disagree for the moment one
// has applied a change and the other not yet: each converges on its own.)
func testTwoProxiesAgree(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	a := startProxy(t, "a", env.Kubeconfig, f.ns)
	b := startProxy(t, "b", env.Kubeconfig, f.ns, "--log-level", "debug") // not every flag alike
	keys := sampleKeys(200)

	fingerprints := map[int]string{} // by N
	agree := func(what string, n int, cond func(shardsAnswer) error) {
		t.Helper()
		sa := a.waitShards(t, podTimeout, what, cond)
		sb := b.waitShards(t, podTimeout, what, cond)
		if !reflect.DeepEqual(sa, sb) {
			t.Fatalf("%s: /shards differ:\na: %+v\nb: %+v", what, sa, sb)
		}
		if fp, ok := fingerprints[n]; ok && fp != sa.Fingerprint {
			t.Errorf("%s: fingerprint for %d shards is %s; it was %s before", what, n, sa.Fingerprint, fp)
		}
		for m, fp := range fingerprints {
			if m != n && fp == sa.Fingerprint {
				t.Errorf("%s: fingerprint %s for %d shards equals the one for %d", what, fp, n, m)
			}
		}
		fingerprints[n] = sa.Fingerprint

		own := owners(t, n, keys)
		ctx := context.Background()
		bad := 0
		for _, k := range keys {
			la, err := a.locate(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			lb, err := b.locate(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if la != lb || la.Shard != own[k] || la.Ordinal != ordinalOf(own[k]) {
				if bad++; bad <= 5 {
					t.Errorf("%s: /locate?key=%q: a %+v, b %+v; want %s", what, k, la, lb, own[k])
				}
			}
		}
		t.Logf("%s: both proxies agree on %d keys over %d shards, fingerprint %s", what, len(keys), n, sa.Fingerprint)
	}
	both := func(conds ...func(shardsAnswer) error) func(shardsAnswer) error {
		return func(a shardsAnswer) error {
			for _, c := range conds {
				if err := c(a); err != nil {
					return err
				}
			}
			return nil
		}
	}
	replicas := func(n int) func(shardsAnswer) error {
		return func(a shardsAnswer) error {
			if a.Replicas != n {
				return fmt.Errorf("replicas %d; want %d", a.Replicas, n)
			}
			return nil
		}
	}

	agree("start", 3, f.allReady(3))

	env.Scale(t, f.ns, "web", 5)
	f.waitPods(t, 5)
	agree("scaled to 5", 5, f.allReady(5))

	f.kubelet.SetReady("web-1", false)
	agree("web-1 not ready", 5, both(replicas(5), shardIs("web-1", false, f.podAddr("web-1"))))

	ip := f.deletePod(t, "web-1")
	agree("web-1 replaced, not ready", 5, both(replicas(5), shardIs("web-1", false, netip.AddrPortFrom(ip, 8080).String())))

	f.kubelet.SetReady("web-1", true)
	agree("web-1 ready", 5, f.allReady(5))

	env.Scale(t, f.ns, "web", 2)
	f.waitPods(t, 2)
	agree("scaled to 2", 2, f.allReady(2))

	env.Scale(t, f.ns, "web", 3)
	f.waitPods(t, 3)
	agree("back to 3", 3, f.allReady(3))
}
