package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/homedir"
)

// inClusterNamespaceFile holds the pod's namespace in every pod that mounts
// a ServiceAccount token.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// NewClient builds a clientset from kubeconfig when given (--kubeconfig),
// else from the in-cluster ServiceAccount, else from $KUBECONFIG, else from
// ~/.kube/config. It also returns the namespace to use when --namespace is
// not given: the pod's own namespace in cluster, else the kubeconfig
// context's namespace, else "default".
func NewClient(kubeconfig string) (kubernetes.Interface, string, error) {
	cfg, ns, err := kubeRESTConfig(kubeconfig)
	if err != nil {
		return nil, "", err
	}
	cfg.UserAgent = "shard-proxy"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	return client, ns, nil
}

func kubeRESTConfig(kubeconfig string) (*rest.Config, string, error) {
	if kubeconfig != "" {
		return fromKubeconfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, kubeconfig)
	}
	cfg, err := rest.InClusterConfig()
	if err == nil {
		ns := "default"
		if data, err := os.ReadFile(inClusterNamespaceFile); err == nil && strings.TrimSpace(string(data)) != "" {
			ns = strings.TrimSpace(string(data))
		}
		return cfg, ns, nil
	}
	// Not in a cluster, or in one without a mounted token: try the files.
	// The default rules read $KUBECONFIG (a list of files) when set; else
	// ~/.kube/config, looked up now rather than when client-go was
	// initialized, and without client-go's migration of legacy files.
	inClusterErr := err
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.MigrationRules = nil
	where := "~/.kube/config"
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		where = "$KUBECONFIG (" + env + ")"
	} else {
		rules.Precedence = []string{filepath.Join(homedir.HomeDir(), clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
	}
	cfg, ns, err := fromKubeconfig(rules, where)
	if err != nil && !errors.Is(inClusterErr, rest.ErrNotInCluster) {
		return nil, "", fmt.Errorf("%w; in-cluster config: %v", err, inClusterErr)
	}
	return cfg, ns, err
}

func fromKubeconfig(rules *clientcmd.ClientConfigLoadingRules, where string) (*rest.Config, string, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", fmt.Errorf("no kubernetes configuration: not in a cluster and nothing in %s; pass --kubeconfig", where)
		}
		return nil, "", fmt.Errorf("kubeconfig %s: %w", where, err)
	}
	ns, _, err := cc.Namespace() // "default" when the context has none
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", where, err)
	}
	return cfg, ns, nil
}
