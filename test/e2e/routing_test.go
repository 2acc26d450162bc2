package e2e

import (
	"context"
	"testing"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testRouting: with a StatefulSet of 3, every key of a sample reaches the
// pod that /locate names and that the public formula gives, at that pod's
// IP, and the answering pod is the one X-Shard names.
func testRouting(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	p := startProxy(t, "p", env.Kubeconfig, f.ns)
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))

	keys := sampleKeys(200)
	own := owners(t, 3, keys)
	perPod := map[string]int{}
	ctx := context.Background()
	for _, k := range keys {
		want := own[k]
		perPod[want]++
		loc, err := p.locate(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if loc.Key != k || loc.Shard != want || loc.Ordinal != ordinalOf(want) ||
			loc.Address != f.podAddr(want) || !loc.Ready {
			t.Errorf("/locate?key=%q = %+v; want %s ready at %s", k, loc, want, f.podAddr(want))
		}
	}
	f.sweep(t, p, keys, own)
	for i := range 3 {
		if perPod[podName(i)] == 0 {
			t.Errorf("no key of the sample belongs to %s: %v", podName(i), perPod)
		}
	}
	t.Logf("%d keys routed per the formula: %v", len(keys), perPod)
}
