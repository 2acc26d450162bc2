package kubeenv_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
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

	t.Run("TLS pods and an impostor", func(t *testing.T) { testTLSPods(t, env) })

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

// testTLSPods: with WithTLS each pod serves TLS with a certificate for its
// stable name under the test's CA; an impostor that took over web-1's
// address with web-0's certificate fails a client that verifies web-1's
// name in the handshake, before any request byte, and counts it so; a
// client that asks for web-0 there gets the impostor's answer, counted as a
// request (so the counters can tell the two apart).
func testTLSPods(t *testing.T, env *kubeenv.Env) {
	ns := env.Namespace(t)
	ca := testutil.NewCA(t, "pods CA")
	kubelet := env.StartKubelet(t, ns, kubeenv.WithTLS(ca))
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 2, AppProtocol: "https"})
	eps := waitReady(t, env, ns, "web", 2)
	for i := range 2 {
		pod := fmt.Sprintf("web-%d", i)
		name := kubeenv.StableName(pod, "web", ns)
		code, pr, err := getTLS(ca, eps[pod], name)
		if err != nil || code != http.StatusOK || pr.Pod != pod || pr.TLS == nil ||
			pr.TLS.ServerName != name || pr.TLS.Version != "TLS 1.3" || pr.TLS.ALPN != "h2" {
			t.Errorf("%s over TLS as %s: %d %+v (TLS %+v), %v; want 200 from %s over TLS 1.3, h2", pod, name, code, pr, pr.TLS, err, pod)
		}
		if leaf, ok := kubelet.PodCert(pod); !ok || leaf.TLS.Leaf.DNSNames[0] != name {
			t.Errorf("PodCert(%s) = %v, %v; want a certificate for %s", pod, leaf, ok, name)
		}
	}

	imps, err := kubelet.Impersonate("web-1", "web-0")
	if err != nil || len(imps) != 1 {
		t.Fatalf("Impersonate: %v, %v", imps, err)
	}
	im := imps[0]
	_, _, err = getTLS(ca, eps["web-1"], kubeenv.StableName("web-1", "web", ns))
	if err == nil || !strings.Contains(err.Error(), "certificate is valid for "+kubeenv.StableName("web-0", "web", ns)) {
		t.Errorf("a client verifying web-1 at its address: %v; want the impostor's certificate refused", err)
	}
	kubeenv.Eventually(t, 10*time.Second, "the impostor saw the failed handshake", func(context.Context) error {
		if s := im.Stats(); s != (kubeenv.ImpostorStats{Accepted: 1, Failed: 1, LastError: s.LastError}) || s.LastError == "" {
			return fmt.Errorf("impostor stats %+v; want 1 accepted, 1 failed handshake, nothing else", s)
		}
		return nil
	})
	code, pr, err := getTLS(ca, eps["web-1"], kubeenv.StableName("web-0", "web", ns))
	if err != nil || code != http.StatusOK || pr.Pod != "web-0" {
		t.Errorf("a client asking for web-0 at web-1's address: %d %+v, %v; want the impostor's 200 as web-0", code, pr, err)
	}
	if s := im.Stats(); s.Accepted != 2 || s.Handshakes != 1 || s.Requests != 1 || s.Bytes == 0 {
		t.Errorf("impostor stats %+v; want 2 accepted, 1 handshake, 1 request and its bytes", s)
	}
	t.Logf("impostor at %s as %s: %+v", im.Addr, im.As, im.Stats())
}

// getTLS sends GET / over TLS to ip:8080, verifying the certificate under
// ca for name.
func getTLS(ca *testutil.CA, ip netip.Addr, name string) (int, kubeenv.PodResponse, error) {
	var pr kubeenv.PodResponse
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: name}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + netip.AddrPortFrom(ip, 8080).String() + "/")
	if err != nil {
		return 0, pr, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, pr, json.NewDecoder(resp.Body).Decode(&pr)
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
