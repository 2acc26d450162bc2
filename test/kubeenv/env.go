// Package kubeenv runs a real local Kubernetes control plane for tests, so
// that the watcher meets a real API server and real controllers rather than
// a fake clientset: etcd, kube-apiserver and kube-controller-manager as child
// processes on loopback, a network namespace for pod IPs, and a fake
// kubelet and scheduler that turn Pods into real HTTP servers in that
// namespace (HTTPS with a certificate for each pod's stable name under
// WithTLS, where Impersonate can put an impostor at a pod's address).
// StatefulSets create real Pods, and the EndpointSlice controller
// publishes real EndpointSlices for them.
//
// Tests skip, saying how to provision, when the binaries are missing or the
// process is not root. Provision with `make test` or
// `bash test/kube/provision.sh`.
//
// A typical test:
//
//	env := kubeenv.Start(t)                 // control plane, ~4 s
//	ns := env.Namespace(t)                  // fresh namespace
//	kubelet := env.StartKubelet(t, ns)      // runs the pods of ns
//	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 3})
//	// ... run the proxy with --kubeconfig env.Kubeconfig --namespace ns
//	// --kube-service web; pods answer at their IPs with a PodResponse.
//	kubelet.SetReady("web-1", false)        // web-1 leaves the ready endpoints
//	env.Scale(t, ns, "web", 4)
//	env.StopAPIServer(); env.StartAPIServer(t)
//
// Starting takes a few seconds, so related cases share one Env as subtests.
package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// KubeVersion is the Kubernetes release the binaries are built from; it
// matches the client-go minor version of the main module.
const KubeVersion = "v1.36.3"

// Env is a running control plane. Its fields are set by Start and must not
// be changed.
type Env struct {
	// Config authenticates as a cluster admin (a client certificate in
	// system:masters). Use rest.CopyConfig before changing it.
	Config *rest.Config
	// Client is an admin clientset built from Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file, for running the
	// proxy binary out of cluster with --kubeconfig.
	Kubeconfig string
	// Net is the pod network namespace used by kubelets of this Env.
	Net *Netns
	// Dir holds certificates, kubeconfigs and the components' logs.
	Dir string

	t                    testing.TB
	pki                  *pki
	etcd, apiserver, kcm *process
	procs                []*process
	shmDir               string // etcd's data on tmpfs, if there
}

// Start runs etcd, kube-apiserver and kube-controller-manager (statefulset,
// endpointslice, serviceaccount and garbage-collector controllers) and a pod
// network namespace, waits until they serve, and stops everything when the
// test ends. It skips the test in -short mode and when the environment
// cannot run them.
// Starting takes a few seconds, so tests usually share one Env through
// subtests, each in its own namespace (see Namespace).
func Start(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("kubeenv: a local control plane is not started in -short mode")
	}
	bins := findBinaries(t)
	e := &Env{t: t, Net: NewNetns(t), Dir: t.TempDir()}
	t.Cleanup(e.stopAll)

	var err error
	if e.pki, err = newPKI(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	files, err := e.pki.write(e.Dir)
	if err != nil {
		t.Fatalf("kubeenv: writing certificates: %v", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	apiPort := ports[2]

	e.etcd = e.newProcess("etcd", bins.etcd, etcdArgs(e.etcdDataDir(), etcdURL, ports[1]))
	e.apiserver = e.newProcess("kube-apiserver", bins.apiserver, apiserverArgs(files, etcdURL, apiPort))

	begin := time.Now()
	e.must(e.etcd.start())
	e.must(e.waitFor(e.etcd, 30*time.Second, "etcd health", func(ctx context.Context) error {
		return httpOK(ctx, etcdURL+"/health")
	}))

	e.Config = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: e.pki.caCert, CertData: e.pki.adminCert, KeyData: e.pki.adminKey,
		},
		// Tests create bursts of objects; the default 5 QPS would make
		// them wait on the client rather than on the cluster.
		QPS: 200, Burst: 400,
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	e.must(e.startAPIServer())

	if e.Kubeconfig, err = e.writeKubeconfig("admin.kubeconfig", "", ""); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	e.kcm = e.newProcess("kube-controller-manager", bins.kcm, kcmArgs(e.Kubeconfig))
	e.must(e.kcm.start())
	// The serviceaccount controller creating default/default proves that the
	// controller manager is connected and running its controllers.
	e.must(e.waitFor(e.kcm, 60*time.Second, "controller manager to create default/default ServiceAccount", func(ctx context.Context) error {
		_, err := e.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}))
	t.Logf("kubeenv: control plane %s up in %v (logs in %s)", e.Config.Host, time.Since(begin).Round(time.Millisecond), e.Dir)
	return e
}

type binaries struct{ etcd, apiserver, kcm string }

// BinDir returns the directory searched for kube-apiserver and
// kube-controller-manager: $SHARD_PROXY_KUBE_BIN, else
// $SHARD_PROXY_KUBE_CACHE, else ~/.cache/shard-proxy/kube-v1.36.3, the
// directory test/kube/provision.sh builds into.
func BinDir() string {
	if d := os.Getenv("SHARD_PROXY_KUBE_BIN"); d != "" {
		return d
	}
	if d := os.Getenv("SHARD_PROXY_KUBE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "shard-proxy", "kube-"+KubeVersion)
}

const provisionHint = "provision with `make test` or `sudo bash test/kube/provision.sh`"

func findBinaries(t testing.TB) binaries {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kubeenv: needs root (network namespace for pod IPs); " + provisionHint)
	}
	var b binaries
	dir := BinDir()
	for _, p := range []struct {
		dst  *string
		name string
	}{{&b.apiserver, "kube-apiserver"}, {&b.kcm, "kube-controller-manager"}} {
		path := filepath.Join(dir, p.name)
		if st, err := os.Stat(path); err != nil || st.Mode()&0o111 == 0 {
			t.Skipf("kubeenv: %s not found in %s; %s", p.name, dir, provisionHint)
		}
		*p.dst = path
	}
	b.etcd, _ = exec.LookPath("etcd")
	if b.etcd == "" {
		if _, err := os.Stat("/usr/bin/etcd"); err != nil {
			t.Skip("kubeenv: etcd not found (Debian package etcd-server); " + provisionHint)
		}
		b.etcd = "/usr/bin/etcd"
	}
	return b
}

func (e *Env) newProcess(name, path string, args []string) *process {
	p := &process{name: name, path: path, args: args, logPath: filepath.Join(e.Dir, name+".log")}
	e.procs = append(e.procs, p)
	return p
}

func (e *Env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("kubeenv: %v", err)
	}
}

// etcdDataDir prefers tmpfs: Debian's etcd 3.4 has no --unsafe-no-fsync and
// fsyncs to disk make every API write slow. stopAll removes it.
func (e *Env) etcdDataDir() string {
	if d, err := os.MkdirTemp("/dev/shm", "shard-proxy-etcd-"); err == nil {
		e.shmDir = d
		return d
	}
	return filepath.Join(e.Dir, "etcd")
}

func etcdArgs(dataDir, clientURL string, peerPort int) []string {
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return []string{
		"--name=default",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		"--log-level=warn",
	}
}

func apiserverArgs(f pkiFiles, etcdURL string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + f.serverCert,
		"--tls-private-key-file=" + f.serverKey,
		"--client-ca-file=" + f.ca,
		// Signing keys and an issuer make TokenRequest work, so tests can
		// run the proxy as a ServiceAccount under RBAC.
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f.saPub,
		"--service-account-signing-key-file=" + f.saKey,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		// The kubernetes Service's endpoints would be this loopback
		// address, which Endpoints validation rejects.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
}

func kcmArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=statefulset-controller,endpointslice-controller,serviceaccount-controller,garbage-collector-controller",
		"--leader-elect=false",
		"--secure-port=0", // nothing to serve; readiness is checked through the API
		// The default 20 QPS throttles controllers during test bursts.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--v=1",
	}
}

// StopAPIServer kills kube-apiserver, as a crash or a lost node would; its
// graceful shutdown would wait many seconds on open watches. etcd and the
// controller manager keep running; clients see connection errors until
// StartAPIServer.
func (e *Env) StopAPIServer() {
	e.apiserver.stop(0)
}

// StartAPIServer starts kube-apiserver again on the same port with the same
// etcd and waits until it is ready; it fails t if that takes over 90 s.
func (e *Env) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := e.startAPIServer(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
}

func (e *Env) startAPIServer() error {
	if err := e.apiserver.start(); err != nil {
		return err
	}
	rc := e.Client.Discovery().RESTClient()
	return e.waitFor(e.apiserver, 90*time.Second, "kube-apiserver /readyz", func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").Do(ctx).Raw()
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
}

// waitFor polls cond every 100 ms until it returns nil, p exits, or the
// timeout passes.
func (e *Env) waitFor(p *process, timeout time.Duration, what string, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exited := p.exited()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		last = cond(attempt)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("waiting for %s: %w; log tail:\n%s", what, p.exitErr(), p.tail(40))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: timed out after %v, last error: %v", what, timeout, last)
		case <-tick.C:
		}
	}
}

func (e *Env) stopAll() {
	if e.t.Failed() {
		for _, p := range e.procs {
			e.t.Logf("kubeenv: last lines of %s (%s):\n%s", p.name, p.logPath, p.tail(30))
		}
	}
	// Reverse start order: controllers first, etcd last. Nothing is kept,
	// so only etcd gets a moment to stop cleanly.
	for i := len(e.procs) - 1; i >= 0; i-- {
		grace := time.Duration(0)
		if e.procs[i] == e.etcd {
			grace = 5 * time.Second
		}
		e.procs[i].stop(grace)
	}
	if e.shmDir != "" {
		os.RemoveAll(e.shmDir)
	}
}

// dnsLabel turns a test name into a prefix usable in object names.
func dnsLabel(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	if out == "" {
		out = "test"
	}
	return out
}

// freePorts returns n distinct free loopback ports below the kernel's
// ephemeral range, so that a port stays free while the API server is
// stopped instead of being taken by some outgoing connection.
func freePorts(n int) ([]int, error) {
	lo, hi := 20000, 32000
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first > 11000 {
				hi = first - 1
				lo = hi - 10000
			}
		}
	}
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, errors.New("no free loopback ports")
	}
	return ports, nil
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
