package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testClients: the Go client against a proxy watching a real StatefulSet.
// Its owner for 500 keys is /locate's before and after a scale, which it
// follows within a second of the proxy; a request during a pod restart
// waits and then reaches the new pod. Then the CLI reaches the same admin
// port as kube://NAMESPACE/SERVICE through the API server's service proxy,
// also under its kubectl plugin name.
func testClients(t *testing.T, env *kubeenv.Env) {
	f := newFixture(t, env, 3)
	// The admin port listens on the host's side of the pod network: the
	// API server's service proxy reaches it there (never on loopback).
	p := startProxy(t, "p", env.Kubeconfig, f.ns, "--admin-listen", env.Net.Gateway.String()+":0")
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(ctx, p.admin, client.Config{OwnerWait: podTimeout})
	if err != nil {
		t.Fatal(err)
	}
	keys := sampleKeys(500)
	clientAgrees(t, p, c, keys)

	env.Scale(t, f.ns, "web", 4)
	f.waitPods(t, 4)
	p.waitShards(t, podTimeout, "4 ready shards", f.allReady(4))
	seen := time.Now()
	kubeenv.Eventually(t, time.Second, "the client on 4 ready shards within a second of the proxy", func(context.Context) error {
		if top := c.Topology(); top.Replicas != 4 || readyCount(top) != 4 {
			return fmt.Errorf("client topology: %d replicas, %d ready", top.Replicas, readyCount(top))
		}
		return nil
	})
	t.Logf("the client followed the scale %v after the proxy", ms(time.Since(seen)))
	clientAgrees(t, p, c, keys)

	t.Run("PodRestart", func(t *testing.T) { clientThroughRestart(t, f, c, keys) })
	t.Run("KubeAdmin", func(t *testing.T) {
		// A second proxy with an admin token: through the service proxy
		// the token travels in X-Shard-Proxy-Token, since the API server
		// takes Authorization for itself.
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		guarded := startProxy(t, "guarded", env.Kubeconfig, f.ns, "--admin-listen", env.Net.Gateway.String()+":0", "--admin-token-file", tokenFile)
		kubeAdmin(t, env, f, guarded, p, keys[0])
	})
}

func readyCount(top client.Topology) int {
	n := 0
	for _, s := range top.Shards {
		if s.Ready {
			n++
		}
	}
	return n
}

// clientAgrees checks the client's owner of every key against /locate.
func clientAgrees(t *testing.T, p *proxy, c *client.Client, keys []string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		want, err := p.locate(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Owner(k)
		if err != nil || got.Name != want.Shard || got.Address != want.Address {
			t.Fatalf("key %q: client %+v %v, /locate %+v", k, got, err, want)
		}
	}
}

// clientThroughRestart sends a request for a key of web-1 while web-1 is
// not ready, replaces the pod, and checks that the request waited and was
// answered by the new pod.
func clientThroughRestart(t *testing.T, f *fixture, c *client.Client, keys []string) {
	const pod = "web-1"
	key := ""
	for _, k := range keys {
		if sh, _ := c.Owner(k); sh.Name == pod {
			key = k
			break
		}
	}
	f.kubelet.SetReady(pod, false)
	kubeenv.Eventually(t, podTimeout, "the client sees "+pod+" not ready", func(context.Context) error {
		if sh, _ := c.Owner(key); sh.Ready {
			return fmt.Errorf("%s still ready", pod)
		}
		return nil
	})
	done := make(chan testutil.Answer, 1)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://web/x", nil)
		req.Header.Set("X-Shard-Key", key)
		resp, err := (&http.Client{Transport: c}).Do(req)
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			errc <- err
			return
		}
		done <- testutil.Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
	}()
	select {
	case a := <-done:
		t.Fatalf("the request for %s's key was answered while it was not ready: %v", pod, a)
	case err := <-errc:
		t.Fatalf("the request for %s's key failed while it waited: %v", pod, err)
	case <-time.After(300 * time.Millisecond):
	}
	newIP := f.deletePod(t, pod)
	f.kubelet.SetReady(pod, true)
	select {
	case a := <-done:
		if err := routedTo(a, key, pod, newIP); err != nil {
			t.Fatal(err)
		}
	case err := <-errc:
		t.Fatalf("the held request: %v", err)
	case <-time.After(podTimeout):
		t.Fatalf("the held request was not answered within %v of the new pod", podTimeout)
	}
}

// kubeAdmin publishes the admin port of guarded (a proxy with the admin
// token s3cret) as the Service shard-proxy (port "admin", endpoints by
// hand: the proxy runs out of cluster) and runs the CLI against
// kube://NAMESPACE/shard-proxy; p, without a token, says what to expect.
func kubeAdmin(t *testing.T, env *kubeenv.Env, f *fixture, guarded, p *proxy, key string) {
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(guarded.admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	publishAdmin(t, env, f.ns, ap)
	bin := proxyBuild.Path(t)
	target := "kube://" + f.ns + "/shard-proxy"
	run := func(name string, args ...string) ([]byte, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(testutil.ChildEnv(), "SHARD_PROXY_ADMIN_TOKEN=s3cret")
		return cmd.CombinedOutput()
	}
	var a shardsAnswer
	kubeenv.Eventually(t, proxyTimeout, "shards through the service proxy", func(context.Context) error {
		out, err := run(bin, "shards", "--admin", target, "--kubeconfig", env.Kubeconfig, "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return json.Unmarshal(out, &a)
	})
	if a.Replicas != 4 || a.Ready != 4 {
		t.Errorf("shards through kube://: %+v", a)
	}
	cmd := exec.Command(bin, "shards", "--admin", target, "--kubeconfig", env.Kubeconfig)
	cmd.Env = testutil.ChildEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("shards through kube:// without the admin token: %v\n%s\nwant 401", err, out)
	}
	plugin := filepath.Join(t.TempDir(), "kubectl-shard")
	if err := os.Symlink(bin, plugin); err != nil {
		t.Fatal(err)
	}
	want, err := p.locate(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(plugin, "locate", key, "--admin", target+":admin", "--kubeconfig", env.Kubeconfig)
	if err != nil || !strings.Contains(string(out), want.Shard) {
		t.Errorf("kubectl-shard locate %s --admin %s:admin: %v\n%s\nwant %s", key, target, err, out, want.Shard)
	}
}

// publishAdmin creates a selectorless Service shard-proxy with the port
// "admin", and its Endpoints and EndpointSlice at ap. The API server's
// service proxy only goes to an address that is a Pod's, so the proxy,
// which runs out of cluster, gets a Pod object with that IP, bound to a
// node no kubelet serves.
func publishAdmin(t *testing.T, env *kubeenv.Env, ns string, ap netip.AddrPort) {
	t.Helper()
	ctx := context.Background()
	port := int32(ap.Port())
	ref := adminPod(t, env, ns, ap.Addr())
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "admin", Port: 9090, TargetPort: intstr.FromInt32(port)}}}}
	if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the service proxy of some API server versions reads Endpoints
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: ap.Addr().String(), TargetRef: ref}},
		Ports:     []corev1.EndpointPort{{Name: "admin", Port: port}},
	}}}
	if _, err := env.Client.CoreV1().Endpoints(ns).Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	name, ready := "admin", true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "shard-proxy-admin", Labels: map[string]string{discoveryv1.LabelServiceName: "shard-proxy"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ap.Addr().String()}, TargetRef: ref,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	if _, err := env.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// adminPod creates the Pod object standing for the proxy at ip, running.
func adminPod(t *testing.T, env *kubeenv.Env, ns string, ip netip.Addr) *corev1.ObjectReference {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shard-proxy-0"}, Spec: corev1.PodSpec{
		NodeName:   "out-of-cluster",
		Containers: []corev1.Container{{Name: "shard-proxy", Image: "shard-proxy"}},
	}}
	pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip.String()
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID}
}
