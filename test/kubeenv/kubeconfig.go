package kubeenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for this control plane into Dir. With
// an empty token it authenticates with the admin client certificate.
func (e *Env) writeKubeconfig(name, token, namespace string) (string, error) {
	auth := &clientcmdapi.AuthInfo{Token: token}
	if token == "" {
		auth = &clientcmdapi.AuthInfo{ClientCertificateData: e.pki.adminCert, ClientKeyData: e.pki.adminKey}
	}
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{
			"kubeenv": {Server: e.Config.Host, CertificateAuthorityData: e.pki.caCert},
		},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{"user": auth},
		Contexts: map[string]*clientcmdapi.Context{
			"kubeenv": {Cluster: "kubeenv", AuthInfo: "user", Namespace: namespace},
		},
		CurrentContext: "kubeenv",
	}
	path := filepath.Join(e.Dir, name)
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	return path, nil
}

// TokenKubeconfig writes a kubeconfig that authenticates with a bearer token
// (e.g. from ServiceAccountToken) and whose context namespace is namespace
// ("" for none), and returns its path.
func (e *Env) TokenKubeconfig(t testing.TB, token, namespace string) string {
	t.Helper()
	f, err := os.CreateTemp(e.Dir, "token-*.kubeconfig")
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	f.Close()
	path, err := e.writeKubeconfig(filepath.Base(f.Name()), token, namespace)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	return path
}

// ServiceAccountToken returns a one-hour token for the ServiceAccount
// namespace/name from the TokenRequest API. The ServiceAccount must exist.
func (e *Env) ServiceAccountToken(t testing.TB, namespace, name string) string {
	t.Helper()
	ttl := int64(time.Hour / time.Second)
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubeenv: requesting token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}
