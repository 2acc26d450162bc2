package main

import (
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// standInAPIServer answers what the CLI asks of the Kubernetes API server
// for kube:// admin URLs: the Service, and its service proxy, which (as the
// real one does) authenticates the caller by Authorization, drops that
// field and forwards the rest to the admin port. The real API server is
// exercised by test/e2e (clients_test.go).
func standInAPIServer(t *testing.T, adminURL string, proxied *atomic.Int64) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(adminURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	const svc = `{"kind":"Service","apiVersion":"v1","metadata":{"name":"shard-proxy","namespace":"ns1"},` +
		`"spec":{"ports":[{"name":"data","port":8080},{"name":"admin","port":9090}]}}`
	// TLS: clientcmd attaches the kubeconfig's credentials only to https.
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer kube-token" {
			http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization")
		const proxyPrefix = "/api/v1/namespaces/ns1/services/shard-proxy:admin/proxy"
		switch {
		case r.URL.Path == "/api/v1/namespaces/ns1/services/shard-proxy":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(svc))
		case strings.HasPrefix(r.URL.Path, proxyPrefix+"/"):
			proxied.Add(1)
			r.URL.Path = strings.TrimPrefix(r.URL.Path, proxyPrefix)
			rp.ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func writeKubeconfig(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}))
	cfg := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: "` + ts.URL + `"
    certificate-authority-data: ` + ca + `
users:
- name: u
  user:
    token: kube-token
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
`
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubeAdminURL(t *testing.T) {
	shards := testutil.StartShards(t, 3, "shard")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--ring", "modulus", "--shards", shardList(shards), "--admin-token-file", tokenFile)
	var proxied atomic.Int64
	api := standInAPIServer(t, "http://"+p.admin, &proxied)
	kc := writeKubeconfig(t, api)
	env := map[string]string{"SHARD_PROXY_ADMIN_TOKEN": "s3cret", "KUBECONFIG": kc}

	for _, target := range []string{"kube://ns1/shard-proxy", "kube://ns1/shard-proxy:admin"} {
		code, out, errOut := runCLI(t, env, "locate", "43", "--admin", target)
		if code != 0 || !strings.Contains(out, "shard-1") {
			t.Errorf("locate --admin %s: exit %d, stdout %s, stderr %s", target, code, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, map[string]string{"SHARD_PROXY_ADMIN_TOKEN": "s3cret"}, "explain", "/x", "-H", "X-Shard-Key: 5",
		"--admin", "kube://ns1/shard-proxy", "--kubeconfig", kc, "-o", "json")
	if code != 0 || !strings.Contains(out, `"shard": "shard-2"`) {
		t.Errorf("explain through kube://, --kubeconfig: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	if proxied.Load() < 3 {
		t.Errorf("%d requests went through the service proxy, want 3", proxied.Load())
	}
	for _, bad := range []string{"kube://ns1", "kube://NS/x", "kube://ns1/shard-proxy:no_such!"} {
		if code, _, errOut := runCLI(t, env, "shards", "--admin", bad); code != 2 || !strings.Contains(errOut, "kube://NAMESPACE/SERVICE") {
			t.Errorf("--admin %s: exit %d, stderr %s", bad, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, env, "shards", "--admin", "kube://ns1/missing"); code == 0 || !strings.Contains(errOut, "service ns1/missing") {
		t.Errorf("a missing Service: exit %d, stderr %s", code, errOut)
	}

}

// TestKubectlPlugin runs the binary under the name kubectl-shard, as
// kubectl runs a plugin: the subcommands work, and without one it prints
// the plugin's usage instead of starting a proxy.
func TestKubectlPlugin(t *testing.T) {
	shards := testutil.StartShards(t, 2, "shard")
	p := startProxy(t, "--ring", "modulus", "--shards", shardList(shards))
	plugin := filepath.Join(t.TempDir(), "kubectl-shard")
	if err := os.Symlink(proxyBinary(t), plugin); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(plugin, "locate", "3", "--admin", "http://"+p.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "shard-1") {
		t.Errorf("kubectl-shard locate 3: %v\n%s", err, out)
	}
	out, err = exec.Command(plugin).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "Usage: kubectl shard COMMAND") {
		t.Errorf("kubectl-shard alone: %v\n%s", err, out)
	}
	if out, err = exec.Command(plugin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "locate") {
		t.Errorf("kubectl-shard --help: %v\n%s", err, out)
	}
}
