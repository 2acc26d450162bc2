package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/homedir"
)

// kubeScheme is the --admin form that reaches the admin port through the
// Kubernetes API server's service proxy: kube://NAMESPACE/SERVICE[:PORT].
const kubeScheme = "kube://"

// kubeTarget is a parsed kube:// admin URL.
type kubeTarget struct {
	namespace, service, port string // port: a name or number, "" to look it up
}

func parseKubeAdmin(raw string) (kubeTarget, error) {
	rest, _ := strings.CutPrefix(raw, kubeScheme)
	ns, svcPort, ok := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	svc, port, _ := strings.Cut(svcPort, ":")
	bad := func(what string) error {
		return fmt.Errorf("--admin %q: %s; want kube://NAMESPACE/SERVICE[:PORT], e.g. kube://shard-demo/shard-proxy:admin", raw, what)
	}
	switch {
	case !ok:
		return kubeTarget{}, bad("no SERVICE")
	case len(validation.IsDNS1123Label(ns)) > 0:
		return kubeTarget{}, bad("NAMESPACE is not a DNS label")
	case len(validation.IsDNS1035Label(svc)) > 0:
		return kubeTarget{}, bad("SERVICE is not a DNS label")
	case port != "" && len(validation.IsValidPortName(port)) > 0 && !isPortNumber(port):
		return kubeTarget{}, bad("PORT is neither a port name nor a number")
	}
	return kubeTarget{namespace: ns, service: svc, port: port}, nil
}

func isPortNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

// kubeRESTConfig loads the caller's kubeconfig: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config, with its current context.
func kubeRESTConfig(kubeconfig string, getenv func(string) string) (*rest.Config, error) {
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	if kubeconfig == "" {
		if env := getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
			rules.Precedence = filepath.SplitList(env)
		} else {
			rules.Precedence = []string{filepath.Join(homedir.HomeDir(), clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// kubeAdmin returns the base URL of the admin port behind the API
// server's service proxy and a client that authenticates as the caller.
// The admin token then travels in admin.TokenHeader: the API server takes
// Authorization for itself.
func kubeAdmin(raw, kubeconfig string, timeout time.Duration, getenv func(string) string) (string, *http.Client, error) {
	target, err := parseKubeAdmin(raw)
	if err != nil {
		return "", nil, err
	}
	cfg, err := kubeRESTConfig(kubeconfig, getenv)
	if err != nil {
		return "", nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("kubeconfig: %w", err)
	}
	hc.Timeout = timeout
	seg := target.service + ":" + target.port
	if target.port == "" {
		if seg, err = lookUpAdminPort(cfg, hc, target); err != nil {
			return "", nil, err
		}
	}
	base := strings.TrimSuffix(cfg.Host, "/") + "/api/v1/namespaces/" + target.namespace + "/services/" + seg + "/proxy"
	return base, hc, nil
}

// lookUpAdminPort reads the Service and names its admin port for the
// service proxy: the port named "admin", else its only port; https when
// the port says so (appProtocol or name).
func lookUpAdminPort(cfg *rest.Config, hc *http.Client, t kubeTarget) (string, error) {
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := cs.CoreV1().Services(t.namespace).Get(ctx, t.service, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", t.namespace, t.service, err)
	}
	var port *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == "admin" || len(svc.Spec.Ports) == 1 {
			port = &svc.Spec.Ports[i]
			break
		}
	}
	if port == nil {
		var names []string
		for _, p := range svc.Spec.Ports {
			names = append(names, cmpName(p))
		}
		return "", fmt.Errorf("service %s/%s has no port named admin and %d ports (%s): name one, kube://%s/%s:PORT",
			t.namespace, t.service, len(names), strings.Join(names, ", "), t.namespace, t.service)
	}
	seg := t.service + ":" + cmpName(*port)
	if port.Name == "https" || (port.AppProtocol != nil && *port.AppProtocol == "https") {
		seg = "https:" + seg
	}
	return seg, nil
}

// cmpName is a port's name, or its number when it has none.
func cmpName(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}
