package kubeenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// TestStatefulSetPodsServe checks the whole chain a Kubernetes test relies
// on: a StatefulSet of 3 gets 3 ready endpoints in its EndpointSlices, and
// each endpoint address reaches that pod's own HTTP server. Then deleting a
// pod brings a replacement with a new IP, a pod marked not ready leaves the
// ready endpoints, the API server restarts, and a ServiceAccount token
// kubeconfig is subject to RBAC.
func TestStatefulSetPodsServe(t *testing.T) {
	env := kubeenv.Start(t)
	ns := env.Namespace(t)
	kubelet := env.StartKubelet(t, ns)
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 3})

	begin := time.Now()
	eps := waitReady(t, env, ns, "web", 3)
	t.Logf("3 ready endpoints after %v: %v", time.Since(begin).Round(time.Millisecond), eps)
	for i := range 3 {
		name := fmt.Sprintf("web-%d", i)
		ip, ok := eps[name]
		if !ok {
			t.Fatalf("no ready endpoint for %s in %v", name, eps)
		}
		if got, ok := kubelet.PodIP(name); !ok || got != ip {
			t.Errorf("kubelet.PodIP(%s) = %v, %v; want %v", name, got, ok, ip)
		}
		resp := get(t, ip, "/hello?x=1")
		if resp.Pod != name || resp.IP != ip.String() || resp.Path != "/hello" || resp.Query != "x=1" || resp.Method != "GET" {
			t.Errorf("GET %s answered %+v; want pod %s", ip, resp, name)
		}
	}

	t.Run("deleted pod comes back with a new IP", func(t *testing.T) {
		old := eps["web-1"]
		begin := time.Now()
		if err := env.Client.CoreV1().Pods(ns).Delete(context.Background(), "web-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var now map[string]netip.Addr
		kubeenv.Eventually(t, 30*time.Second, "web-1 ready with a new IP", func(ctx context.Context) error {
			var err error
			if now, err = kubeenv.ReadyEndpoints(ctx, env.Client, ns, "web"); err != nil {
				return err
			}
			if ip, ok := now["web-1"]; !ok || ip == old {
				return fmt.Errorf("web-1 is %v (old IP %v)", now["web-1"], old)
			}
			return nil
		})
		if resp := get(t, now["web-1"], "/"); resp.Pod != "web-1" {
			t.Errorf("new web-1 IP answered as %q", resp.Pod)
		}
		t.Logf("web-1 replaced after %v: %v -> %v", time.Since(begin).Round(time.Millisecond), old, now["web-1"])
		// The old address is gone from the namespace: nothing answers there.
		client := &http.Client{Timeout: time.Second}
		if resp, err := client.Get("http://" + netip.AddrPortFrom(old, 8080).String() + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("old web-1 IP %v still answers", old)
		}
	})

	t.Run("not ready pod leaves the ready endpoints", func(t *testing.T) {
		kubelet.SetReady("web-2", false)
		waitReadyFunc(t, env, ns, "web", func(eps map[string]netip.Addr) bool {
			_, ok := eps["web-2"]
			return len(eps) == 2 && !ok
		})
		kubelet.SetReady("web-2", true)
		waitReady(t, env, ns, "web", 3)
	})

	t.Run("API server restart", func(t *testing.T) {
		begin := time.Now()
		env.StopAPIServer()
		t.Logf("stopped in %v", time.Since(begin).Round(time.Millisecond))
		if _, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{}); err == nil {
			t.Fatal("listing pods worked with the API server stopped")
		}
		begin = time.Now()
		env.StartAPIServer(t)
		t.Logf("started in %v", time.Since(begin).Round(time.Millisecond))
		begin = time.Now()
		env.Scale(t, ns, "web", 4)
		eps := waitReady(t, env, ns, "web", 4)
		t.Logf("web-3 ready after %v", time.Since(begin).Round(time.Millisecond))
		if resp := get(t, eps["web-3"], "/"); resp.Pod != "web-3" {
			t.Errorf("web-3 answered as %q", resp.Pod)
		}
	})

	t.Run("ServiceAccount token kubeconfig", func(t *testing.T) {
		ctx := context.Background()
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}
		if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		path := env.TokenKubeconfig(t, env.ServiceAccountToken(t, ns, "reader"), ns)
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatal(err)
		}
		client := kubernetes.NewForConfigOrDie(cfg)
		if _, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("listing pods without a RoleBinding: got %v, want Forbidden", err)
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
		}
		if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: ns}},
		}
		if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kubeenv.Eventually(t, 10*time.Second, "ServiceAccount can list pods", func(ctx context.Context) error {
			_, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		})
	})
}

func waitReady(t *testing.T, env *kubeenv.Env, ns, svc string, n int) map[string]netip.Addr {
	t.Helper()
	return waitReadyFunc(t, env, ns, svc, func(eps map[string]netip.Addr) bool { return len(eps) == n })
}

func waitReadyFunc(t *testing.T, env *kubeenv.Env, ns, svc string, ok func(map[string]netip.Addr) bool) map[string]netip.Addr {
	t.Helper()
	var eps map[string]netip.Addr
	kubeenv.Eventually(t, 60*time.Second, "ready endpoints of "+svc, func(ctx context.Context) error {
		var err error
		if eps, err = kubeenv.ReadyEndpoints(ctx, env.Client, ns, svc); err != nil {
			return err
		}
		if !ok(eps) {
			return fmt.Errorf("ready endpoints are %v", eps)
		}
		return nil
	})
	return eps
}

func get(t *testing.T, ip netip.Addr, path string) kubeenv.PodResponse {
	t.Helper()
	url := "http://" + netip.AddrPortFrom(ip, 8080).String() + path
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var pr kubeenv.PodResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
	return pr
}
