package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// publication is one Topology handed to publish, with its arrival time.
type publication struct {
	topo watch.Topology
	at   time.Time
}

// kubeRun runs a Kube source for the rest of the test and collects what it
// publishes.
type kubeRun struct {
	ch chan publication
}

func startKube(t *testing.T, k *Source) *kubeRun {
	t.Helper()
	r := &kubeRun{ch: make(chan publication, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- k.Run(ctx, func(topo watch.Topology) error {
			select {
			case r.ch <- publication{topo, time.Now()}:
			default:
				t.Error("too many publishes; the test stopped reading")
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	return r
}

// await reads publications until check accepts one and returns it; every
// publication passed on the way is given to each (if not nil) first.
func (r *kubeRun) await(t *testing.T, timeout time.Duration, what string, each func(watch.Topology), check func(watch.Topology) error) publication {
	t.Helper()
	deadline := time.After(timeout)
	last := fmt.Errorf("nothing published")
	for {
		select {
		case p := <-r.ch:
			if each != nil {
				each(p.topo)
			}
			if last = check(p.topo); last == nil {
				return p
			}
		case <-deadline:
			t.Fatalf("%s: not published within %v; last: %v", what, timeout, last)
		}
	}
}

// quiet fails if anything is published within d.
func (r *kubeRun) quiet(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case p := <-r.ch:
		t.Fatalf("%s: published %+v", why, p.topo)
	case <-time.After(d):
	}
}

// expect returns a check that the Topology has these shards: pod name ->
// ready, with each ready shard at its pod's IP as the kubelet gave it.
func expect(kubelet *kubeenv.Kubelet, sts string, replicas int, notReady ...int) func(watch.Topology) error {
	return func(topo watch.Topology) error {
		if topo.Replicas != replicas || len(topo.Shards) != replicas {
			return fmt.Errorf("replicas %d with %d shards, want %d: %+v", topo.Replicas, len(topo.Shards), replicas, topo.Shards)
		}
		for i, s := range topo.Shards {
			name := sts + "-" + strconv.Itoa(i)
			wantReady := true
			for _, n := range notReady {
				if n == i {
					wantReady = false
				}
			}
			if s.Ordinal != i || s.Name != name || s.Ready != wantReady {
				return fmt.Errorf("shard %d is %+v, want %s ready=%v", i, s, name, wantReady)
			}
			ip, ok := kubelet.PodIP(name)
			if want := net.JoinHostPort(ip.String(), "8080"); s.Ready && (!ok || s.Addr != want) {
				return fmt.Errorf("shard %s at %q, want %q", name, s.Addr, want)
			}
		}
		return nil
	}
}

// neverBelow fails the test if a Topology on the way has other than n
// replicas: readiness and address changes must not move keys.
func neverBelow(t *testing.T, n int) func(watch.Topology) {
	return func(topo watch.Topology) {
		if topo.Replicas != n {
			t.Errorf("intermediate topology with %d replicas, want %d throughout: %+v", topo.Replicas, n, topo.Shards)
		}
	}
}

// TestKubeSource runs the source against a real API server and controller
// manager: the StatefulSet controller makes pods, the fake kubelet runs them
// and the EndpointSlice controller publishes them.
func TestKubeSource(t *testing.T) {
	env := kubeenv.Start(t)
	ns := env.Namespace(t)
	kubelet := env.StartKubelet(t, ns)
	ctx := context.Background()

	begin := time.Now()
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 3})
	run := startKube(t, &Source{Client: env.Client, Namespace: ns, Service: "web", Logger: kubeTestLogger(t)})
	p := run.await(t, 60*time.Second, "3 ready shards", nil, expect(kubelet, "web", 3))
	t.Logf("latency: StatefulSet created -> 3 ready shards published: %v", p.at.Sub(begin).Round(time.Millisecond))

	t.Run("not ready pod keeps its ordinal", func(t *testing.T) {
		begin := time.Now()
		kubelet.SetReady("web-1", false)
		p := run.await(t, 30*time.Second, "web-1 not ready", neverBelow(t, 3), expect(kubelet, "web", 3, 1))
		t.Logf("latency: pod not ready -> published: %v", p.at.Sub(begin).Round(time.Millisecond))
		begin = time.Now()
		kubelet.SetReady("web-1", true)
		p = run.await(t, 30*time.Second, "web-1 ready again", neverBelow(t, 3), expect(kubelet, "web", 3))
		t.Logf("latency: pod ready -> published: %v", p.at.Sub(begin).Round(time.Millisecond))
	})

	t.Run("deleted pod comes back at a new IP", func(t *testing.T) {
		old, _ := kubelet.PodIP("web-2")
		begin := time.Now()
		if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		p := run.await(t, 30*time.Second, "web-2 ready at a new IP", neverBelow(t, 3), func(topo watch.Topology) error {
			if err := expect(kubelet, "web", 3)(topo); err != nil {
				return err
			}
			if topo.Shards[2].Addr == netip.AddrPortFrom(old, 8080).String() {
				return fmt.Errorf("web-2 still at its old address %s", topo.Shards[2].Addr)
			}
			return nil
		})
		t.Logf("latency: pod deleted -> replacement ready at %s published: %v", p.topo.Shards[2].Addr, p.at.Sub(begin).Round(time.Millisecond))
	})

	t.Run("scale 3 to 4 to 2", func(t *testing.T) {
		begin := time.Now()
		env.Scale(t, ns, "web", 4)
		p := run.await(t, 30*time.Second, "4 replicas", nil, func(topo watch.Topology) error {
			if topo.Replicas != 4 {
				return fmt.Errorf("replicas %d", topo.Replicas)
			}
			return nil
		})
		t.Logf("latency: scaled to 4 -> N=4 published: %v", p.at.Sub(begin).Round(time.Millisecond))
		p = run.await(t, 30*time.Second, "4 ready shards", nil, expect(kubelet, "web", 4))
		t.Logf("latency: scaled to 4 -> web-3 ready published: %v", p.at.Sub(begin).Round(time.Millisecond))

		begin = time.Now()
		env.Scale(t, ns, "web", 2)
		p = run.await(t, 30*time.Second, "2 ready shards", nil, expect(kubelet, "web", 2))
		t.Logf("latency: scaled to 2 -> N=2 published: %v", p.at.Sub(begin).Round(time.Millisecond))
	})

	t.Run("API server down keeps the last topology", func(t *testing.T) {
		env.StopAPIServer()
		run.quiet(t, 10*time.Second, "API server down for 10s")
		env.StartAPIServer(t)
		begin := time.Now()
		env.Scale(t, ns, "web", 3)
		// What the source owes is N: the new pod's readiness also depends on
		// the restarted API server's watch cache, the controller manager and
		// the test kubelet catching up, which under load can take minutes.
		p := run.await(t, 90*time.Second, "N=3 after the restart", nil, func(topo watch.Topology) error {
			if topo.Replicas != 3 || len(topo.Shards) != 3 || topo.Shards[2].Name != "web-2" {
				return fmt.Errorf("replicas %d", topo.Replicas)
			}
			return nil
		})
		t.Logf("latency: scaled to 3 right after the API server restart -> N=3 published: %v (includes the informers' reconnect backoff)", p.at.Sub(begin).Round(time.Millisecond))
	})

	t.Run("StatefulSet deleted means no shards", func(t *testing.T) {
		orphan := metav1.DeletePropagationOrphan
		if err := env.Client.AppsV1().StatefulSets(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
			t.Fatal(err)
		}
		run.await(t, 30*time.Second, "0 replicas", nil, func(topo watch.Topology) error {
			if topo.Replicas != 0 || len(topo.Shards) != 0 {
				return fmt.Errorf("replicas %d, shards %+v", topo.Replicas, topo.Shards)
			}
			return nil
		})
	})
}

// TestKubeSourceOrdinalsStart checks spec.ordinals.start against a real
// StatefulSet controller: pods shard-5 and shard-6 are ring indexes 0 and 1.
func TestKubeSourceOrdinalsStart(t *testing.T) {
	env := kubeenv.Start(t)
	ns := env.Namespace(t)
	kubelet := env.StartKubelet(t, ns)
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "shard", Replicas: 2, OrdinalsStart: 5, PortName: "api", Port: 7000})
	run := startKube(t, &Source{Client: env.Client, Namespace: ns, Service: "shard", Port: "api", Logger: kubeTestLogger(t)})
	run.await(t, 60*time.Second, "shard-5 and shard-6 ready", nil, func(topo watch.Topology) error {
		if topo.Replicas != 2 || len(topo.Shards) != 2 {
			return fmt.Errorf("replicas %d: %+v", topo.Replicas, topo.Shards)
		}
		for i, s := range topo.Shards {
			ip, _ := kubelet.PodIP(s.Name)
			want := watch.Shard{Ordinal: 5 + i, Name: "shard-" + strconv.Itoa(5+i), Addr: netip.AddrPortFrom(ip, 7000).String(), Ready: true, Protocol: watch.HTTP1}
			if s != want {
				return fmt.Errorf("shard %d is %+v, want %+v", i, s, want)
			}
		}
		return nil
	})
}

// TestKubeSourceLeastPrivilege runs the source as a ServiceAccount with only
// the RBAC rules the proxy needs. Without them it publishes nothing (the
// proxy stays not ready) and logs why; once bound, it catches up.
func TestKubeSourceLeastPrivilege(t *testing.T) {
	env := kubeenv.Start(t)
	ns := env.Namespace(t)
	kubelet := env.StartKubelet(t, ns)
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 2})
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client, kubeNS, err := NewClient(env.TokenKubeconfig(t, env.ServiceAccountToken(t, ns, "shard-proxy"), ns))
	if err != nil {
		t.Fatal(err)
	}
	if kubeNS != ns {
		t.Errorf("namespace from the kubeconfig context = %q, want %q", kubeNS, ns)
	}
	run := startKube(t, &Source{Client: client, Namespace: ns, Service: "web", Logger: kubeTestLogger(t)})
	run.quiet(t, 2*time.Second, "without RBAC permissions")

	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "shard-proxy"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "shard-proxy", Namespace: ns}},
	}
	if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run.await(t, 60*time.Second, "2 ready shards once allowed", nil, expect(kubelet, "web", 2))
}

// TestKubeRunStops checks that Run publishes once when nothing exists yet,
// publishes a change, and leaves no goroutine behind. A fake clientset is
// enough here: what is under test is the worker's lifecycle, not the API.
func TestKubeRunStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client := fake.NewClientset()
	var mu sync.Mutex
	var got []watch.Topology
	published := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- (&Source{Client: client, Namespace: "ns", Service: "web", Logger: kubeTestLogger(t)}).Run(ctx, func(topo watch.Topology) error {
			mu.Lock()
			got = append(got, topo)
			mu.Unlock()
			published <- struct{}{}
			return nil
		})
	}()
	waitPublished := func(what string) {
		t.Helper()
		select {
		case <-published:
		case <-time.After(10 * time.Second):
			t.Fatalf("no publish: %s", what)
		}
	}
	waitPublished("the first topology")
	replicas := int32(2)
	if _, err := client.AppsV1().StatefulSets("ns").Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPublished("the StatefulSet")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []watch.Topology{{}, {Replicas: 2, Shards: []watch.Shard{{Ordinal: 0, Name: "web-0", Protocol: watch.HTTP1}, {Ordinal: 1, Name: "web-1", Protocol: watch.HTTP1}}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %+v, want %+v", got, want)
	}
}

func TestKubeRunConfig(t *testing.T) {
	for _, k := range []*Source{
		{Namespace: "ns", Service: "web"},
		{Client: fake.NewClientset(), Service: "web"},
		{Client: fake.NewClientset(), Namespace: "ns"},
	} {
		if err := k.Run(context.Background(), func(watch.Topology) error { return nil }); err == nil {
			t.Errorf("Run(%+v) = nil, want a configuration error", k)
		}
	}
}

// kubeTestLogger sends the source's logs to the test log.
func kubeTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
