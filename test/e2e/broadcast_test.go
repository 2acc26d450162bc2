package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// delivery is one request a pod received.
type delivery struct {
	pod, ip, method, path, query, body string
}

// deliveries records what every pod received; pods answer as
// kubeenv.DefaultHandler does.
type deliveries struct {
	mu  sync.Mutex
	got []delivery
}

func (d *deliveries) handler(pod kubeenv.Pod) http.Handler {
	next := kubeenv.DefaultHandler(pod)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.mu.Lock()
		d.got = append(d.got, delivery{pod.Name, pod.IP.String(), r.Method, r.URL.Path, r.URL.RawQuery, string(body)})
		d.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// withQuery returns the deliveries whose query is query.
func (d *deliveries) withQuery(query string) []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []delivery
	for _, x := range d.got {
		if x.query == query {
			out = append(out, x)
		}
	}
	return out
}

// testBroadcast: POST /broadcast/cache/evict on the admin port reaches every
// pod at its current IP with the method, path, query and body, and the
// report says so per shard; after a pod restart the pod at its new IP gets
// it; a not-ready pod is not contacted and is reported failed with "shard
// not ready" (502 under policy all, 200 under quorum).
func testBroadcast(t *testing.T, env *kubeenv.Env) {
	var d deliveries
	f := newFixture(t, env, 3, kubeenv.WithHandler(d.handler))
	p := startProxy(t, "p", env.Kubeconfig, f.ns)
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))

	// round broadcasts once and checks the report and the deliveries;
	// notReady names the shards that must be reported not ready.
	round := func(n int, policy string, wantStatus int, notReadyPod string) {
		t.Helper()
		query := fmt.Sprintf("scope=all&round=%d", n)
		body := fmt.Sprintf(`{"all":true,"round":%d}`, n)
		path := "/cache/evict?" + query
		if policy != "" {
			path += "&policy=" + policy
		}
		ctx := context.Background()
		status, rep, err := p.broadcast(ctx, http.MethodPost, path, body)
		if err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		wantFailed := 0
		if notReadyPod != "" {
			wantFailed = 1
		}
		wantPolicy := policy
		if wantPolicy == "" {
			wantPolicy = "all"
		}
		if status != wantStatus || rep.Policy != wantPolicy || rep.Method != http.MethodPost || rep.Succeeded != 3-wantFailed || rep.Failed != wantFailed || len(rep.Shards) != 3 {
			t.Fatalf("round %d: %d %+v; want %d, policy %s, %d succeeded, %d failed, 3 shards", n, status, rep, wantStatus, wantPolicy, 3-wantFailed, wantFailed)
		}
		got := d.withQuery(query)
		for i, r := range rep.Shards {
			pod := podName(i)
			if r.Ordinal != i || r.Shard != pod {
				t.Errorf("round %d: report entry %d is %+v; want %s", n, i, r, pod)
				continue
			}
			var at []delivery
			for _, x := range got {
				if x.pod == pod {
					at = append(at, x)
				}
			}
			if pod == notReadyPod {
				if r.Error != "shard not ready" || r.Status != 0 {
					t.Errorf("round %d: %s reported %+v; want error \"shard not ready\"", n, pod, r)
				}
				if len(at) != 0 {
					t.Errorf("round %d: not-ready %s was contacted: %+v", n, pod, at)
				}
				continue
			}
			ip := f.podIP(t, pod)
			var pr kubeenv.PodResponse
			if r.Status != http.StatusOK || r.Error != "" || r.Address != f.podAddr(pod) || json.Unmarshal([]byte(r.Body), &pr) != nil {
				t.Errorf("round %d: %s reported %+v; want 200 from %s", n, pod, r, f.podAddr(pod))
				continue
			}
			if pr.Pod != pod || pr.IP != ip.String() || pr.Method != http.MethodPost || pr.Path != "/cache/evict" ||
				pr.Query != query || pr.Body != body {
				t.Errorf("round %d: %s echoed %+v; want POST /cache/evict?%s %s at %s", n, pod, pr, query, body, ip)
			}
			want := delivery{pod, ip.String(), http.MethodPost, "/cache/evict", query, body}
			if len(at) != 1 || at[0] != want {
				t.Errorf("round %d: %s received %+v; want once %+v", n, pod, at, want)
			}
		}
		if len(got) != 3-wantFailed {
			t.Errorf("round %d: pods received %d requests: %+v; want %d", n, len(got), got, 3-wantFailed)
		}
	}

	round(1, "", http.StatusOK, "")

	f.deletePod(t, "web-1")
	p.waitShards(t, podTimeout, "web-1 ready at its new IP", f.allReady(3))
	round(2, "", http.StatusOK, "")

	f.kubelet.SetReady("web-2", false)
	p.waitShards(t, podTimeout, "web-2 not ready", shardIs("web-2", false, f.podAddr("web-2")))
	round(3, "", http.StatusBadGateway, "web-2")
	round(4, "quorum", http.StatusOK, "web-2")
}
