package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testPodRestart: a pod that restarts with a new IP keeps its keys. While
// it is not ready its keys get 503 shard not ready; afterwards they reach
// the pod at its new IP; the other shards' keys see no error at any point.
//
// Two ways a pod goes away:
//
//   - announced: it fails its readiness first (SetReady false), as a pod
//     being drained does, and is then deleted. The proxy knows before the
//     pod goes, so its keys get exactly 503 + Retry-After: 1 throughout.
//   - unannounced: a ready pod is deleted, as on a crash or a node loss.
//     Until the EndpointSlice says so, the proxy still sends its keys to
//     the old IP, which the pod no longer serves. Acceptable there, and
//     only there: 502 shard unreachable (refused or reset) and 504 shard
//     timeout (the old IP no longer answers, like a real cluster's); then
//     503 shard not ready; a 200 only from the owner itself. Never an
//     answer from another pod.
func testPodRestart(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	p := startProxy(t, "p", env.Kubeconfig, f.ns)
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	keys := sampleKeys(200)
	own := owners(t, 3, keys)

	t.Run("announced", func(t *testing.T) {
		const pod = "web-1"
		mine, others := keysOf(keys, own, pod)
		g := startGuard(t, p, others, ownerCheck(own))
		defer g.stop(t, "other shards' keys")

		f.kubelet.SetReady(pod, false)
		p.waitShards(t, podTimeout, pod+" not ready", shardIs(pod, false, f.podAddr(pod)))
		ctx := context.Background()
		for _, k := range mine {
			a, err := p.send(ctx, k)
			if err == nil {
				err = notReady(a, k, pod)
			}
			if err != nil {
				t.Fatal(err)
			}
		}

		// Deleted and replaced: the replacement inherits "not ready", so
		// the keys get 503 from the deletion until it is made ready.
		down := startGuard(t, p, mine, func(k string, a testutil.Answer) error { return notReady(a, k, pod) })
		newIP := f.deletePod(t, pod)
		newAddr := netip.AddrPortFrom(newIP, 8080).String()
		p.waitShards(t, podTimeout, pod+" at its new address, not ready", shardIs(pod, false, newAddr))
		down.stop(t, pod+"'s keys while it is replaced, not ready")

		f.kubelet.SetReady(pod, true)
		p.waitShards(t, podTimeout, pod+" ready at its new address", shardIs(pod, true, newAddr))
		for _, k := range mine {
			a, err := p.send(ctx, k)
			if err == nil {
				err = routedTo(a, k, pod, newIP)
			}
			if err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("unannounced", func(t *testing.T) {
		const pod = "web-2"
		mine, others := keysOf(keys, own, pod)
		g := startGuard(t, p, others, ownerCheck(own))
		defer g.stop(t, "other shards' keys")

		down := startGuard(t, p, mine, func(k string, a testutil.Answer) error { return ownerOrError(a, k, pod) })
		newIP := f.deletePod(t, pod)
		newAddr := netip.AddrPortFrom(newIP, 8080).String()
		p.waitShards(t, podTimeout, pod+" ready at its new address", shardIs(pod, true, newAddr))
		down.stop(t, pod+"'s keys while it is replaced")

		ctx := context.Background()
		for _, k := range mine {
			a, err := p.send(ctx, k)
			if err == nil {
				err = routedTo(a, k, pod, newIP)
			}
			if err != nil {
				t.Error(err)
			}
		}
	})
	f.sweep(t, p, keys, own)
}

// ownerOrError accepts what a key of a pod that just went away may get: an
// answer from that pod, or the proxy's 502, 503 or 504 naming it.
func ownerOrError(a testutil.Answer, key, pod string) error {
	wantErr := map[int]string{
		http.StatusBadGateway:         "shard unreachable",
		http.StatusServiceUnavailable: "shard not ready",
		http.StatusGatewayTimeout:     "shard timeout",
	}
	if a.Status == http.StatusOK {
		return routedTo(a, key, pod, netip.Addr{})
	}
	want, ok := wantErr[a.Status]
	var e errorAnswer
	if !ok || json.Unmarshal(a.Body, &e) != nil || e.Error != want || e.Shard != pod || a.Header.Get("X-Shard") != pod {
		return fmt.Errorf("key %q of %s: got %v", key, pod, a)
	}
	if a.Status == http.StatusServiceUnavailable {
		return notReady(a, key, pod)
	}
	return nil
}
