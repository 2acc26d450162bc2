package kubeenv

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Namespace creates a namespace with a unique name derived from the test's
// name and returns the name. It also creates the namespace's default
// ServiceAccount, which Pod admission requires, instead of waiting for the
// controller to do it.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: dnsLabel(t.Name()) + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubeenv: creating namespace: %v", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := e.Client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubeenv: creating default ServiceAccount in %s: %v", ns.Name, err)
	}
	return ns.Name
}

// StatefulSet describes a sharded workload: a headless Service and a
// StatefulSet of the same name whose pods serve one named TCP port.
type StatefulSet struct {
	// Name of the Service and the StatefulSet; pods are Name-0, Name-1, ...
	Name string
	// Replicas is spec.replicas.
	Replicas int32
	// Port is the container and Service port; default 8080.
	Port int32
	// PortName names the port in the pod and the Service; default "http".
	PortName string
	// OrdinalsStart, when not zero, sets spec.ordinals.start.
	OrdinalsStart int32
	// AppProtocol, when set, is the Service port's appProtocol (such as
	// kubernetes.io/h2c), which the EndpointSlices carry.
	AppProtocol string
}

// CreateStatefulSet creates the headless Service and the StatefulSet. The
// StatefulSet uses podManagementPolicy Parallel, so all pods are created at
// once instead of one after the other becoming ready, which keeps tests fast.
// A Kubelet must run in the namespace for the pods to start.
func (e *Env) CreateStatefulSet(t testing.TB, namespace string, s StatefulSet) {
	t.Helper()
	if s.Port == 0 {
		s.Port = 8080
	}
	if s.PortName == "" {
		s.PortName = "http"
	}
	labels := map[string]string{"app": s.Name}
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  labels,
			Ports: []corev1.ServicePort{{
				Name: s.PortName, Port: s.Port, TargetPort: intstr.FromString(s.PortName), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
	if s.AppProtocol != "" {
		svc.Spec.Ports[0].AppProtocol = &s.AppProtocol
	}
	if _, err := e.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubeenv: creating Service %s/%s: %v", namespace, s.Name, err)
	}
	replicas := s.Replicas
	grace := int64(1)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         s.Name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:  "shard",
						Image: "kubeenv.invalid/pod-server:test", // never pulled: the fake kubelet serves it
						Ports: []corev1.ContainerPort{{Name: s.PortName, ContainerPort: s.Port, Protocol: corev1.ProtocolTCP}},
					}},
				},
			},
		},
	}
	if s.OrdinalsStart != 0 {
		sts.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: s.OrdinalsStart}
	}
	if _, err := e.Client.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubeenv: creating StatefulSet %s/%s: %v", namespace, s.Name, err)
	}
}

// Scale sets spec.replicas of a StatefulSet.
func (e *Env) Scale(t testing.TB, namespace, name string, replicas int32) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := e.Client.AppsV1().StatefulSets(namespace).Patch(context.Background(), name,
		types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("kubeenv: scaling %s/%s to %d: %v", namespace, name, replicas, err)
	}
}

// ReadyEndpoints returns pod name -> address of the ready endpoints in the
// EndpointSlices of Service svc.
func ReadyEndpoints(ctx context.Context, client kubernetes.Interface, namespace, svc string) (map[string]netip.Addr, error) {
	slices, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		return nil, err
	}
	out := map[string]netip.Addr{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || len(ep.Addresses) == 0 || ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
				continue
			}
			if a, err := netip.ParseAddr(ep.Addresses[0]); err == nil {
				out[ep.TargetRef.Name] = a
			}
		}
	}
	return out, nil
}

// Eventually calls cond every 50 ms until it returns nil and fails t with the
// last error if that does not happen within timeout. Each call gets a
// context that ends with the timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubeenv: %s: not true after %v: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

// sortedKeys is used in messages so they read the same on every run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
