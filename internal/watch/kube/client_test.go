package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeTestKubeconfig writes a kubeconfig for server whose context has
// namespace ns ("" for none).
func writeTestKubeconfig(t *testing.T, path, server, ns string) {
	t.Helper()
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: server}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "t"}},
		Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u", Namespace: ns}},
		CurrentContext: "x",
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		t.Fatal(err)
	}
}

// TestKubeRESTConfig checks the resolution order NewClient documents, outside
// a cluster: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; and the
// namespace from the context, else "default". In-cluster config needs a
// pod's mounted token and is exercised by the deployment, not here.
func TestKubeRESTConfig(t *testing.T) {
	dir := t.TempDir()
	explicit := filepath.Join(dir, "explicit")
	fromEnv := filepath.Join(dir, "env")
	home := filepath.Join(dir, "home")
	writeTestKubeconfig(t, explicit, "https://explicit.test:6443", "team")
	writeTestKubeconfig(t, fromEnv, "https://env.test:6443", "")
	writeTestKubeconfig(t, filepath.Join(home, ".kube", "config"), "https://home.test:6443", "homens")

	tests := []struct {
		name       string
		flag       string
		env        string
		home       string
		wantHost   string
		wantNS     string
		wantErrHas string
	}{
		{name: "flag wins", flag: explicit, env: fromEnv, home: home, wantHost: "https://explicit.test:6443", wantNS: "team"},
		{name: "then $KUBECONFIG", env: fromEnv, home: home, wantHost: "https://env.test:6443", wantNS: "default"},
		{name: "then ~/.kube/config", home: home, wantHost: "https://home.test:6443", wantNS: "homens"},
		{name: "nothing", home: filepath.Join(dir, "empty"), wantErrHas: "--kubeconfig"},
		{name: "flag names a missing file", flag: filepath.Join(dir, "missing"), home: home, wantErrHas: "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a cluster
			t.Setenv("KUBERNETES_SERVICE_PORT", "")
			t.Setenv(clientcmd.RecommendedConfigPathEnvVar, tt.env)
			t.Setenv("HOME", tt.home)
			cfg, ns, err := kubeRESTConfig(tt.flag)
			if tt.wantErrHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrHas) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErrHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost || ns != tt.wantNS {
				t.Errorf("got host %q namespace %q, want %q %q", cfg.Host, ns, tt.wantHost, tt.wantNS)
			}
		})
	}
}
