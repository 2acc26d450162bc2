package kubeenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// Kubelet plays scheduler and kubelet for the pods of one namespace: it
// binds each new Pod to its Node, gives it a fresh IP in the Env's network
// namespace, runs a real HTTP server on every container port at that IP and
// reports the pod Running and Ready. A pod being deleted has its servers
// shut down and is then removed, as a kubelet would after its containers
// stopped; a StatefulSet's replacement pod gets a new IP.
type Kubelet struct {
	// Node is the name of the Node the pods are bound to.
	Node string

	client    kubernetes.Interface
	net       *Netns
	namespace string
	handler   func(Pod) http.Handler
	ca        *testutil.CA // pods serve TLS (WithTLS)
	lister    corelisters.PodLister
	queue     workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	running  map[string]*runningPod    // by pod name
	certs    map[string]*testutil.Leaf // by pod name, with WithTLS
	notReady map[string]bool           // pods a test marked not ready
	// grace, when set, makes a deleted pod terminate as a real one does
	// (see WithGracefulTermination); terminating holds when each began.
	grace       time.Duration
	terminating map[string]time.Time
}

type runningPod struct {
	graceful bool // stop by shutting down, not by closing
	uid      types.UID
	ip       netip.Addr
	servers  []*http.Server
	addrs    []string // where servers listen
	wg       sync.WaitGroup
	// impostors took over the servers' addresses (Impersonate).
	impostors []*Impostor
}

// KubeletOption changes how StartKubelet runs pods.
type KubeletOption func(*Kubelet)

// WithHandler makes pods serve handler(pod) instead of DefaultHandler.
func WithHandler(handler func(Pod) http.Handler) KubeletOption {
	return func(k *Kubelet) { k.handler = handler }
}

// WithGracefulTermination makes a deleted pod go away as under a real
// kubelet with a preStop pause: for d it keeps serving (its endpoint is
// terminating but serving), then it reports not ready (the endpoint stops
// serving), and d/2 later its servers shut down gracefully, finishing the
// requests they have, and the pod object is deleted. Without it a deleted
// pod stops at once.
func WithGracefulTermination(d time.Duration) KubeletOption {
	return func(k *Kubelet) { k.grace = d }
}

// StartKubelet creates a Node and runs the fake scheduler and kubelet for
// namespace until the test ends.
func (e *Env) StartKubelet(t testing.TB, namespace string, opts ...KubeletOption) *Kubelet {
	t.Helper()
	k := &Kubelet{
		Node:        "kubelet-" + namespace,
		client:      e.Client,
		net:         e.Net,
		namespace:   namespace,
		handler:     DefaultHandler,
		running:     map[string]*runningPod{},
		certs:       map[string]*testutil.Leaf{},
		notReady:    map[string]bool{},
		terminating: map[string]time.Time{},
		// Retry quickly and never back off for long: the API server may be
		// down for a while in a test, and pods should start soon after it
		// is back.
		queue: workqueue.NewTypedRateLimitingQueue(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, time.Second)),
	}
	for _, o := range opts {
		o(k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.Node}}
	if _, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		cancel()
		t.Fatalf("kubeenv: creating Node %s: %v", k.Node, err)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(e.Client, 0, informers.WithNamespace(namespace))
	informer := factory.Core().V1().Pods()
	k.lister = informer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			_, name, _ := cache.SplitMetaNamespaceKey(key)
			k.queue.Add(name)
		}
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		cancel()
		t.Fatalf("kubeenv: %v", err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	var workers sync.WaitGroup
	workers.Go(func() {
		for k.work(ctx) {
		}
	})
	t.Cleanup(func() {
		cancel()
		k.queue.ShutDown()
		workers.Wait()
		factory.Shutdown()
		k.mu.Lock()
		names := sortedKeys(k.running)
		k.mu.Unlock()
		for _, name := range names {
			k.stopPod(name)
		}
		delCtx, cancelDel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelDel()
		_ = e.Client.CoreV1().Nodes().Delete(delCtx, k.Node, metav1.DeleteOptions{})
	})
	return k
}

// SetReady makes the kubelet report pod as ready or not ready (Ready and
// ContainersReady conditions). The pod's server keeps running either way,
// as a real pod failing its readiness probe would. The setting sticks to the
// pod name, so a replacement pod of the same name inherits it.
func (k *Kubelet) SetReady(pod string, ready bool) {
	k.mu.Lock()
	if ready {
		delete(k.notReady, pod)
	} else {
		k.notReady[pod] = true
	}
	k.mu.Unlock()
	k.queue.Add(pod)
}

// PodIP returns the IP the kubelet gave the running pod, if it runs.
func (k *Kubelet) PodIP(pod string) (netip.Addr, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rp, ok := k.running[pod]
	if !ok {
		return netip.Addr{}, false
	}
	return rp.ip, true
}

func (k *Kubelet) work(ctx context.Context) bool {
	name, shutdown := k.queue.Get()
	if shutdown {
		return false
	}
	defer k.queue.Done(name)
	if err := k.sync(ctx, name); err != nil && ctx.Err() == nil {
		k.queue.AddRateLimited(name)
		return true
	}
	k.queue.Forget(name)
	return true
}

// sync moves one pod a step towards running and reporting its state; the
// update it makes comes back as an event and triggers the next step.
func (k *Kubelet) sync(ctx context.Context, name string) error {
	pod, err := k.lister.Pods(k.namespace).Get(name)
	if apierrors.IsNotFound(err) {
		k.stopPod(name)
		return nil
	}
	if err != nil {
		return err
	}
	k.mu.Lock()
	rp := k.running[name]
	k.mu.Unlock()
	if rp != nil && rp.uid != pod.UID {
		k.stopPod(name) // an old pod of the same name
	}
	switch {
	case pod.DeletionTimestamp != nil:
		return k.remove(ctx, pod)
	case pod.Spec.NodeName == "":
		return k.bind(ctx, pod)
	case pod.Spec.NodeName != k.Node:
		return nil
	}
	ip, err := k.ensureRunning(pod)
	if err != nil {
		return err
	}
	return k.reportStatus(ctx, pod, ip)
}

func (k *Kubelet) bind(ctx context.Context, pod *corev1.Pod) error {
	err := k.client.CoreV1().Pods(k.namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.Node},
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound or gone meanwhile; an event follows
	}
	return err
}

// remove stops the pod's servers and deletes the object for good, as a
// kubelet does once the containers of a terminating pod have stopped.
func (k *Kubelet) remove(ctx context.Context, pod *corev1.Pod) error {
	if k.grace > 0 {
		if wait, err := k.terminate(ctx, pod); wait > 0 || err != nil {
			return err
		}
	}
	k.stopPod(pod.Name)
	zero := int64(0)
	err := k.client.CoreV1().Pods(k.namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// ensureRunning starts the pod's servers unless they run, and returns its IP.
func (k *Kubelet) ensureRunning(pod *corev1.Pod) (netip.Addr, error) {
	k.mu.Lock()
	rp := k.running[pod.Name]
	k.mu.Unlock()
	if rp != nil {
		return rp.ip, nil
	}
	ip, err := k.net.AllocIP()
	if err != nil {
		return netip.Addr{}, err
	}
	rp = &runningPod{uid: pod.UID, ip: ip}
	var tlsConf *tls.Config
	if k.ca != nil {
		if tlsConf, err = k.podTLS(pod); err != nil {
			_ = k.net.ReleaseIP(ip)
			return netip.Addr{}, fmt.Errorf("pod %s: %w", pod.Name, err)
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, port := range c.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			if err := k.serve(rp, pod, port.ContainerPort, tlsConf); err != nil {
				k.stopServers(rp)
				return netip.Addr{}, err
			}
		}
	}
	k.mu.Lock()
	k.running[pod.Name] = rp
	k.mu.Unlock()
	return ip, nil
}

// serve starts the pod's server on port: HTTP/1.1 and HTTP/2 over
// cleartext (h2c, as gRPC servers do), whichever the client starts with,
// or, with tlsConf, over TLS chosen by ALPN.
func (k *Kubelet) serve(rp *runningPod, pod *corev1.Pod, port int32, tlsConf *tls.Config) error {
	addr := net.JoinHostPort(rp.ip.String(), strconv.Itoa(int(port)))
	ln, err := k.net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pod %s: listening on %s: %w", pod.Name, addr, err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(tlsConf == nil)
	protos.SetHTTP2(tlsConf != nil)
	srv := &http.Server{
		Handler:           k.handler(Pod{Namespace: pod.Namespace, Name: pod.Name, Service: pod.Spec.Subdomain, IP: rp.ip, Port: port}),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         &protos,
		TLSConfig:         tlsConf,
	}
	rp.servers = append(rp.servers, srv)
	rp.addrs = append(rp.addrs, addr)
	if tlsConf != nil {
		rp.wg.Go(func() { _ = srv.ServeTLS(ln, "", "") })
	} else {
		rp.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return nil
}

// terminate walks a deleted pod through graceful termination; it returns
// how long until the next step, or 0 once the pod may be removed.
func (k *Kubelet) terminate(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	k.mu.Lock()
	began, seen := k.terminating[pod.Name]
	if !seen {
		began = time.Now()
		k.terminating[pod.Name] = began
	}
	rp := k.running[pod.Name]
	k.mu.Unlock()
	elapsed := time.Since(began)
	switch {
	case rp == nil:
		return 0, nil
	case elapsed < k.grace: // still serving, as during a preStop pause
		k.queue.AddAfter(pod.Name, k.grace-elapsed)
		return k.grace - elapsed, nil
	case elapsed < k.grace+k.grace/2: // not ready: the endpoint stops serving
		k.mu.Lock()
		k.notReady[pod.Name] = true
		k.mu.Unlock()
		wait := k.grace + k.grace/2 - elapsed
		k.queue.AddAfter(pod.Name, wait)
		return wait, k.reportStatus(ctx, pod, rp.ip)
	}
	k.mu.Lock()
	rp.graceful = true
	k.mu.Unlock()
	return 0, nil
}

func (k *Kubelet) stopPod(name string) {
	k.mu.Lock()
	rp := k.running[name]
	delete(k.running, name)
	if _, ok := k.terminating[name]; ok {
		delete(k.terminating, name)
		delete(k.notReady, name) // set by terminate, not by the test
	}
	k.mu.Unlock()
	if rp != nil {
		k.stopServers(rp)
	}
}

// stopServers closes listeners and connections at once, as a killed
// container would (or, for a pod that terminated gracefully, lets the
// requests in flight finish first, for up to 5 s), and gives the IP back.
func (k *Kubelet) stopServers(rp *runningPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.mu.Lock()
	servers, impostors := rp.servers, rp.impostors
	k.mu.Unlock()
	for _, s := range servers {
		if rp.graceful {
			_ = s.Shutdown(ctx)
		}
		_ = s.Close()
	}
	for _, im := range impostors {
		im.Close()
	}
	rp.wg.Wait()
	_ = k.net.ReleaseIP(rp.ip)
}

func (k *Kubelet) reportStatus(ctx context.Context, pod *corev1.Pod, ip netip.Addr) error {
	k.mu.Lock()
	ready := !k.notReady[pod.Name]
	k.mu.Unlock()
	if statusIs(&pod.Status, ip, ready) {
		return nil
	}
	pod = pod.DeepCopy() // never modify the informer's object
	setStatus(pod, ip, k.net.Gateway, ready)
	_, err := k.client.CoreV1().Pods(k.namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // a newer version or a deletion is on its way as an event
	}
	return err
}

func statusIs(s *corev1.PodStatus, ip netip.Addr, ready bool) bool {
	if s.Phase != corev1.PodRunning || s.PodIP != ip.String() {
		return false
	}
	for _, c := range s.Conditions {
		if c.Type == corev1.PodReady {
			return (c.Status == corev1.ConditionTrue) == ready
		}
	}
	return false
}

func setStatus(pod *corev1.Pod, ip, hostIP netip.Addr, ready bool) {
	now := metav1.Now()
	s := &pod.Status
	s.Phase = corev1.PodRunning
	s.HostIP = hostIP.String()
	s.HostIPs = []corev1.HostIP{{IP: hostIP.String()}}
	s.PodIP = ip.String()
	s.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	if s.StartTime == nil {
		s.StartTime = &now
	}
	readyStatus := corev1.ConditionFalse
	if ready {
		readyStatus = corev1.ConditionTrue
	}
	setCondition(s, corev1.PodScheduled, corev1.ConditionTrue, now)
	setCondition(s, corev1.PodInitialized, corev1.ConditionTrue, now)
	setCondition(s, corev1.ContainersReady, readyStatus, now)
	setCondition(s, corev1.PodReady, readyStatus, now)
	s.ContainerStatuses = s.ContainerStatuses[:0]
	for _, c := range pod.Spec.Containers {
		started := true
		s.ContainerStatuses = append(s.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: "kubeenv://" + string(pod.UID) + "/" + c.Name,
			Ready:       ready,
			Started:     &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *s.StartTime}},
		})
	}
}

func setCondition(s *corev1.PodStatus, typ corev1.PodConditionType, status corev1.ConditionStatus, now metav1.Time) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			if s.Conditions[i].Status != status {
				s.Conditions[i].Status = status
				s.Conditions[i].LastTransitionTime = now
			}
			return
		}
	}
	s.Conditions = append(s.Conditions, corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now})
}
