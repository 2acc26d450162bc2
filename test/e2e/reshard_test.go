package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// annotate sets (or, with value "", removes) annotations of the StatefulSet.
func (f *fixture) annotate(t *testing.T, kv map[string]any) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": kv}})
	if _, err := f.env.Client.AppsV1().StatefulSets(f.ns).Patch(context.Background(), "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// testReshard: with shard-proxy.io/replicas pinned at 3, scaling the
// StatefulSet to 4 moves no key (web-3 takes broadcasts only); raising the
// pin to 4 moves keys on both proxy replicas within a second, they agree
// on the fingerprint, and with handoff-from=3 exactly the moved keys reach
// their new owner naming the old one and its address.
func testReshard(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	f.annotate(t, map[string]any{"shard-proxy.io/replicas": "3"})
	a := startProxy(t, "a", env.Kubeconfig, f.ns)
	b := startProxy(t, "b", env.Kubeconfig, f.ns)
	keys := sampleKeys(120)
	own3, own4 := owners(t, 3, keys), owners(t, 4, keys)

	env.Scale(t, f.ns, "web", 4)
	f.waitPods(t, 4)
	pinned := func(sa shardsAnswer) error {
		if sa.Replicas != 3 || len(sa.Shards) != 4 || sa.Shards[3].OwnsKeys || !sa.Shards[3].Ready || sa.Ready != 4 {
			return fmt.Errorf("replicas %d, shards %+v", sa.Replicas, sa.Shards)
		}
		return nil
	}
	fa := a.waitShards(t, proxyTimeout, "N pinned at 3 with 4 pods", pinned).Fingerprint
	fb := b.waitShards(t, proxyTimeout, "N pinned at 3 with 4 pods", pinned).Fingerprint
	if fa != fb {
		t.Fatalf("fingerprints differ while pinned: %s vs %s", fa, fb)
	}
	f.sweep(t, a, keys, own3) // no key moved

	moved := ""
	for _, k := range keys {
		if own3[k] != own4[k] {
			moved = k
			break
		}
	}
	changed := time.Now()
	f.annotate(t, map[string]any{"shard-proxy.io/replicas": "4", "shard-proxy.io/handoff-from": "3"})
	for _, p := range []*proxy{a, b} {
		kubeenv.Eventually(t, proxyTimeout, p.name+" routes per N=4", func(ctx context.Context) error {
			loc, err := p.locate(ctx, moved)
			if err != nil || loc.Shard != own4[moved] {
				return fmt.Errorf("%s: %+v, %v", moved, loc, err)
			}
			return nil
		})
		took := time.Since(changed)
		t.Logf("proxy %s routes moved keys to their new owner %v after the annotation changed", p.name, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("proxy %s took %v to follow the annotation, want within 1 s", p.name, took)
		}
	}
	sa, _ := a.shards(context.Background())
	sb, _ := b.shards(context.Background())
	if sa.Fingerprint != sb.Fingerprint || sa.Fingerprint == fa {
		t.Errorf("after the change: fingerprints %s and %s, want equal and not %s", sa.Fingerprint, sb.Fingerprint, fa)
	}
	f.checkHandoff(t, a, keys, own3, own4, true)
	f.annotate(t, map[string]any{"shard-proxy.io/handoff-from": nil})
	a.waitShards(t, proxyTimeout, "handoff ended", func(sa shardsAnswer) error {
		if sa.HandoffFrom != 0 {
			return fmt.Errorf("handoff_from %d", sa.HandoffFrom)
		}
		return nil
	})
	f.checkHandoff(t, a, keys, own3, own4, false)
}

// checkHandoff sends every key and checks the handoff headers the owner
// received: on moved keys (when on), naming the old owner and its address.
func (f *fixture) checkHandoff(t *testing.T, p *proxy, keys []string, own3, own4 map[string]string, on bool) {
	t.Helper()
	seen := 0
	for _, k := range keys {
		ans, err := p.send(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := routedTo(ans, k, own4[k], f.podIP(t, own4[k])); err != nil {
			t.Fatal(err)
		}
		var pr kubeenv.PodResponse
		_ = json.Unmarshal(ans.Body, &pr)
		prev, addr := pr.Headers["X-Shard-Previous"], pr.Headers["X-Shard-Previous-Address"]
		wantPrev, wantAddr := "", ""
		if on && own3[k] != own4[k] {
			wantPrev, wantAddr = own3[k], f.podAddr(own3[k])
			seen++
		}
		if prev != wantPrev || addr != wantAddr {
			t.Errorf("key %s (%s -> %s, handoff %v): shard saw previous %q at %q, want %q at %q", k, own3[k], own4[k], on, prev, addr, wantPrev, wantAddr)
		}
	}
	if on && seen == 0 {
		t.Error("no key of the sample moved; the handoff went untested")
	}
}
