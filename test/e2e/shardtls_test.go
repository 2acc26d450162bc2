package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// identityMetric is the series that counts failed handshakes with web-1
// because the certificate at its address is another shard's.
const identityMetric = `shard_proxy_shard_tls_errors_total{reason="identity",shard="web-1"}`

// testShardTLSImpostor: a StatefulSet whose pods serve TLS with per-pod
// certificates (Service port appProtocol https) is spoken to over TLS,
// each pod verified for its stable name; /shards says so. Then an
// impostor holding web-0's valid certificate takes over web-1's address:
// web-1's keys are held for --owner-wait and answered 502 "shard identity
// mismatch", the impostor completes no handshake and reads no byte of
// HTTP, every failed handshake is counted with reason identity, and the
// other pods' keys are answered by their owners throughout.
func testShardTLSImpostor(t *testing.T, env *kubeenv.Env) {
	ca := testutil.NewCA(t, "shard CA")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fixture{env: env, ns: env.Namespace(t)}
	f.kubelet = env.StartKubelet(t, f.ns, kubeenv.WithTLS(ca))
	env.CreateStatefulSet(t, f.ns, kubeenv.StatefulSet{Name: "web", Replicas: 3, PortName: "https", AppProtocol: "https"})
	f.waitPods(t, 3)
	const ownerWait = time.Second
	p := startProxy(t, "p", env.Kubeconfig, f.ns, "--port", "https", "--shard-ca-file", caFile,
		"--owner-wait", ownerWait.String())
	p.waitShards(t, proxyTimeout, "3 ready TLS shards, each verified for its stable name", func(a shardsAnswer) error {
		if err := f.allReady(3)(a); err != nil {
			return err
		}
		for _, s := range a.Shards {
			if want := kubeenv.StableName(s.Name, "web", f.ns); s.TLS != "verified" || s.TLSName != want {
				return fmt.Errorf("%s: tls %q, tls_name %q; want verified for %s", s.Name, s.TLS, s.TLSName, want)
			}
		}
		return nil
	})

	keys := sampleKeys(60)
	own := owners(t, 3, keys)
	f.sweepTLS(t, p, keys, own)
	mine, others := keysOf(keys, own, "web-1")
	if len(mine) < 4 || len(others) == 0 {
		t.Fatalf("web-1 owns %d keys of the sample, the others %d; want at least 4 and 1", len(mine), len(others))
	}
	before := p.metricValue(t, identityMetric)

	imps, err := f.kubelet.Impersonate("web-1", "web-0")
	if err != nil || len(imps) != 1 {
		t.Fatalf("impostor for web-1: %v, %v", imps, err)
	}
	im := imps[0]
	g := startGuard(t, p, others, ownerCheck(own))
	var wg sync.WaitGroup
	for _, k := range mine[:4] {
		wg.Go(func() {
			began := time.Now()
			a, err := p.send(context.Background(), k)
			if err == nil {
				err = identityMismatch(a, k, "web-1")
			}
			took := time.Since(began)
			if err == nil && took < ownerWait {
				err = fmt.Errorf("key %q: answered after %v; want it held for --owner-wait %v first", k, took, ownerWait)
			}
			if err != nil {
				t.Error(err)
				return
			}
			t.Logf("key %q: 502 shard identity mismatch after %v", k, took.Round(time.Millisecond))
		})
	}
	wg.Wait()
	var delta float64
	kubeenv.Eventually(t, proxyTimeout, "every handshake with the impostor refused and counted", func(context.Context) error {
		s := im.Stats()
		delta = p.metricValue(t, identityMetric) - before
		if s.Accepted == 0 || s.Failed != s.Accepted || delta != float64(s.Failed) {
			return fmt.Errorf("impostor %+v; %s grew by %v; want every accepted connection a failed handshake, each counted", s, identityMetric, delta)
		}
		return nil
	})
	g.stop(t, "other pods' keys while an impostor holds web-1's address")
	if s := im.Stats(); s.Handshakes != 0 || s.Requests != 0 || s.Bytes != 0 {
		t.Errorf("the impostor completed %d handshakes and read %d requests, %d bytes of HTTP; want none", s.Handshakes, s.Requests, s.Bytes)
	}
	t.Logf("impostor at %s with %s's certificate: %+v; %s +%v", im.Addr, im.As, im.Stats(), identityMetric, delta)
}

// sweepTLS is sweep for TLS pods: each key is answered by its owner, which
// saw the request arrive over TLS 1.3 (ALPN http/1.1) with its own stable
// name as SNI.
func (f *fixture) sweepTLS(t *testing.T, p *proxy, keys []string, own map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), proxyTimeout)
	defer cancel()
	for _, k := range keys {
		a, err := p.send(ctx, k)
		if err == nil {
			err = routedTo(a, k, own[k], f.podIP(t, own[k]))
		}
		if err == nil {
			err = overTLS(a, k, kubeenv.StableName(own[k], "web", f.ns))
		}
		if err != nil {
			t.Fatalf("proxy %s: %v", p.name, err)
		}
	}
	t.Logf("%d keys answered by their owners over TLS", len(keys))
}

// overTLS checks that the pod answering a saw the request over TLS 1.3
// with ALPN http/1.1 and the SNI name.
func overTLS(a testutil.Answer, key, name string) error {
	var pr kubeenv.PodResponse
	if err := json.Unmarshal(a.Body, &pr); err != nil {
		return fmt.Errorf("key %q: body %q: %v", key, a.Body, err)
	}
	if pr.TLS == nil || pr.TLS.Version != "TLS 1.3" || pr.TLS.ALPN != "http/1.1" || pr.TLS.ServerName != name {
		return fmt.Errorf("key %q: %s saw TLS %+v; want TLS 1.3, ALPN http/1.1, SNI %s", key, pr.Pod, pr.TLS, name)
	}
	return nil
}

// identityMismatch checks that a is the proxy's answer for a key whose
// owner's address holds another shard's certificate: 502, JSON
// {"error":"shard identity mismatch","shard":pod}.
func identityMismatch(a testutil.Answer, key, pod string) error {
	var e errorAnswer
	if a.Status != http.StatusBadGateway || a.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(a.Body, &e) != nil || e.Error != "shard identity mismatch" || e.Shard != pod {
		return fmt.Errorf("key %q: got %v (Content-Type %q); want 502 shard identity mismatch for %s",
			key, a, a.Header.Get("Content-Type"), pod)
	}
	return nil
}

// metricValue returns the value of series (name{labels} as /metrics
// writes it), 0 when it is not there yet.
func (p *proxy) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	a, err := p.do(context.Background(), http.MethodGet, p.admin+"/metrics", nil, nil)
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("proxy %s: /metrics: %v, %v", p.name, a, err)
	}
	for _, l := range strings.Split(string(a.Body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("proxy %s: /metrics: %q: %v", p.name, l, err)
			}
			return n
		}
	}
	return 0
}
