package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// podTimeout bounds waits for pods to start, stop or change readiness:
// the controllers, the fake kubelet and the EndpointSlice controller each
// take a step.
const podTimeout = 60 * time.Second

// proxyTimeout bounds waits for the proxy to see a change that is already
// in the API.
const proxyTimeout = 30 * time.Second

// fixture is one namespace with a fake kubelet and the StatefulSet "web"
// (headless Service "web", port "http" 8080).
type fixture struct {
	env     *kubeenv.Env
	ns      string
	kubelet *kubeenv.Kubelet
}

// newFixture creates the namespace, the kubelet and the StatefulSet, and
// waits until its replicas pods are ready.
func newFixture(t *testing.T, env *kubeenv.Env, replicas int32, opts ...kubeenv.KubeletOption) *fixture {
	t.Helper()
	f := &fixture{env: env, ns: env.Namespace(t)}
	f.kubelet = env.StartKubelet(t, f.ns, opts...)
	env.CreateStatefulSet(t, f.ns, kubeenv.StatefulSet{Name: "web", Replicas: replicas})
	f.waitPods(t, int(replicas))
	return f
}

func podName(i int) string { return "web-" + strconv.Itoa(i) }

func ordinalOf(pod string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(pod, "web-"))
	if err != nil {
		return -1
	}
	return n
}

// waitPods waits until exactly web-0..web-(n-1) exist, none terminating,
// each ready in the EndpointSlices at the address its kubelet gave it.
func (f *fixture) waitPods(t *testing.T, n int) {
	t.Helper()
	kubeenv.Eventually(t, podTimeout, fmt.Sprintf("%d ready pods", n), func(ctx context.Context) error {
		pods, err := f.env.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		var names []string
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s is terminating", p.Name)
			}
			names = append(names, p.Name)
		}
		if len(names) != n {
			return fmt.Errorf("pods are %v", names)
		}
		eps, err := kubeenv.ReadyEndpoints(ctx, f.env.Client, f.ns, "web")
		if err != nil {
			return err
		}
		if len(eps) != n {
			return fmt.Errorf("ready endpoints are %v", eps)
		}
		for i := range n {
			ip, ok := f.kubelet.PodIP(podName(i))
			if !ok || eps[podName(i)] != ip {
				return fmt.Errorf("%s: endpoint %v, kubelet IP %v", podName(i), eps[podName(i)], ip)
			}
		}
		return nil
	})
}

// podAddr is the address of pod's server, host:port, as the proxy should
// show it.
func (f *fixture) podAddr(pod string) string {
	ip, ok := f.kubelet.PodIP(pod)
	if !ok {
		return ""
	}
	return netip.AddrPortFrom(ip, 8080).String()
}

func (f *fixture) podIP(t *testing.T, pod string) netip.Addr {
	t.Helper()
	ip, ok := f.kubelet.PodIP(pod)
	if !ok {
		t.Fatalf("pod %s does not run", pod)
	}
	return ip
}

// allReady accepts /shards when it has n shards web-0..web-(n-1), all ready
// at their pods' current addresses.
func (f *fixture) allReady(n int) func(shardsAnswer) error {
	return func(a shardsAnswer) error {
		if a.Replicas != n || len(a.Shards) != n || a.Ready != n {
			return fmt.Errorf("replicas %d, ready %d, shards %+v; want %d ready", a.Replicas, a.Ready, a.Shards, n)
		}
		for i, s := range a.Shards {
			if s.Ordinal != i || s.Name != podName(i) || !s.Ready || s.Address != f.podAddr(s.Name) {
				return fmt.Errorf("shard %d is %+v; want %s ready at %s", i, s, podName(i), f.podAddr(podName(i)))
			}
		}
		return nil
	}
}

// shardIs accepts /shards when pod's shard has the readiness ready and,
// unless addr is "", the address addr.
func shardIs(pod string, ready bool, addr string) func(shardsAnswer) error {
	return func(a shardsAnswer) error {
		for _, s := range a.Shards {
			if s.Name == pod {
				if s.Ready != ready || (addr != "" && s.Address != addr) {
					return fmt.Errorf("%s is %+v; want ready=%v address %q", pod, s, ready, addr)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not in %+v", pod, a.Shards)
	}
}

// sampleKeys returns n distinct keys of the shapes clients use.
func sampleKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		switch i % 4 {
		case 0:
			keys[i] = strconv.Itoa(100000 + i*7919)
		case 1:
			keys[i] = fmt.Sprintf("account-%d", i)
		case 2:
			keys[i] = fmt.Sprintf("user/%d@example.com", i)
		default:
			keys[i] = fmt.Sprintf("tenant-%x:order-%d", i*2654435761, i)
		}
	}
	return keys
}

// owners computes, with the public formula (the default jump ring over the
// shard names in ordinal order), the owning pod of each key for n replicas.
func owners(t *testing.T, n int, keys []string) map[string]string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = podName(i)
	}
	r, err := ring.New(ring.Config{}, names)
	if err != nil {
		t.Fatalf("ring over %v: %v", names, err)
	}
	own := make(map[string]string, len(keys))
	for _, k := range keys {
		own[k] = names[r.Owner([]byte(k))]
	}
	return own
}

// keysOf splits keys into those owned by pod and the others.
func keysOf(keys []string, own map[string]string, pod string) (mine, others []string) {
	for _, k := range keys {
		if own[k] == pod {
			mine = append(mine, k)
		} else {
			others = append(others, k)
		}
	}
	return mine, others
}

// routedTo checks that a is the answer of pod (at ip, unless ip is
// invalid) to key: 200, X-Shard, X-Pod and the echoed body all name pod.
func routedTo(a testutil.Answer, key, pod string, ip netip.Addr) error {
	if a.Status != http.StatusOK {
		return fmt.Errorf("key %q: got %v; want 200 from %s", key, a, pod)
	}
	var pr kubeenv.PodResponse
	if err := json.Unmarshal(a.Body, &pr); err != nil {
		return fmt.Errorf("key %q: body %q: %v", key, a.Body, err)
	}
	if a.Header.Get("X-Shard") != pod || a.Header.Get("X-Pod") != pod || pr.Pod != pod {
		return fmt.Errorf("key %q: X-Shard %q, X-Pod %q, body pod %q; want %s", key,
			a.Header.Get("X-Shard"), a.Header.Get("X-Pod"), pr.Pod, pod)
	}
	if pr.Headers["X-Shard-Key"] != key {
		return fmt.Errorf("key %q: pod %s saw X-Shard-Key %q", key, pod, pr.Headers["X-Shard-Key"])
	}
	if ip.IsValid() && pr.IP != ip.String() {
		return fmt.Errorf("key %q: answered by %s at %s; want %s at %s", key, pod, pr.IP, pod, ip)
	}
	return nil
}

// notReady checks that a is the proxy's answer for a key whose owner pod is
// not ready: 503, Retry-After: 1, JSON {"error":"shard not ready","shard":pod}.
func notReady(a testutil.Answer, key, pod string) error {
	var e errorAnswer
	if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "1" ||
		a.Header.Get("Content-Type") != "application/json" || a.Header.Get("X-Shard") != pod ||
		json.Unmarshal(a.Body, &e) != nil || e.Error != "shard not ready" || e.Shard != pod {
		return fmt.Errorf("key %q: got %v (Content-Type %q); want 503 shard not ready for %s with Retry-After: 1",
			key, a, a.Header.Get("Content-Type"), pod)
	}
	return nil
}

// sweep sends every key once and checks that it reached the pod own names,
// at that pod's current IP. It reports up to 5 failures.
func (f *fixture) sweep(t *testing.T, p *proxy, keys []string, own map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), proxyTimeout)
	defer cancel()
	bad := 0
	for _, k := range keys {
		a, err := p.send(ctx, k)
		if err == nil {
			err = routedTo(a, k, own[k], f.podIP(t, own[k]))
		}
		if err != nil {
			if bad++; bad <= 5 {
				t.Errorf("proxy %s: %v", p.name, err)
			}
		}
	}
	if bad > 5 {
		t.Errorf("proxy %s: %d of %d keys misrouted or failed", p.name, bad, len(keys))
	}
}

// guard sends keys round and round in the background and checks every
// answer; it records failures and counts statuses. Other shards' keys must
// not notice while one shard changes, and a changing shard's keys must get
// only the answers the contract allows.
type guard struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	total    int
	statuses map[int]int
	failures []string
	latency  []time.Duration // of each request, in order
}

func startGuard(t *testing.T, p *proxy, keys []string, check func(key string, a testutil.Answer) error) *guard {
	ctx, cancel := context.WithCancel(context.Background())
	g := &guard{cancel: cancel, done: make(chan struct{}), statuses: map[int]int{}}
	t.Cleanup(func() { // in case the test ends before stop
		cancel()
		<-g.done
	})
	// A client of its own, so that the guard's connections are not the
	// test's.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	go func() {
		defer close(g.done)
		defer client.CloseIdleConnections()
		tick := time.NewTicker(2 * time.Millisecond) // paced: two cores also run the control plane
		defer tick.Stop()
		for i := 0; ; i++ {
			k := keys[i%len(keys)]
			began := time.Now()
			a, err := p.sendClient(ctx, client, k)
			took := time.Since(began)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = check(k, a)
			}
			g.mu.Lock()
			g.total++
			g.statuses[a.Status]++
			g.latency = append(g.latency, took)
			if err != nil {
				g.failures = append(g.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			g.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return g
}

// ownerCheck accepts only a 200 from the key's owner in own.
func ownerCheck(own map[string]string) func(string, testutil.Answer) error {
	return func(k string, a testutil.Answer) error { return routedTo(a, k, own[k], netip.Addr{}) }
}

// stop ends the guard, logs what it saw and fails t if any check failed.
func (g *guard) stop(t *testing.T, what string) {
	t.Helper()
	g.cancel()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("%s: %d requests, answers by status %v, %d failed", what, g.total, g.statuses, len(g.failures))
	if g.total == 0 {
		t.Errorf("%s: no request was sent", what)
	}
	if len(g.failures) > 0 {
		t.Errorf("%s: %d of %d requests failed; first ones:\n%s", what, len(g.failures), g.total,
			joinFirst(g.failures, 10))
	}
}

func joinFirst(lines []string, n int) string {
	out := ""
	for i, l := range lines {
		if i == n {
			out += fmt.Sprintf("… %d more\n", len(lines)-n)
			break
		}
		out += l + "\n"
	}
	return out
}

// deletePod deletes pod and waits until its kubelet runs the replacement
// at a new IP, which it returns.
func (f *fixture) deletePod(t *testing.T, pod string) netip.Addr {
	t.Helper()
	old := f.podIP(t, pod)
	if err := f.env.Client.CoreV1().Pods(f.ns).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting %s: %v", pod, err)
	}
	var ip netip.Addr
	kubeenv.Eventually(t, podTimeout, pod+" running again at a new IP", func(context.Context) error {
		var ok bool
		if ip, ok = f.kubelet.PodIP(pod); !ok || ip == old {
			return fmt.Errorf("%s runs at %v (old %v, running %v)", pod, ip, old, ok)
		}
		return nil
	})
	t.Logf("%s replaced: %v -> %v", pod, old, ip)
	return ip
}

// percentile returns the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
