package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DefaultKubeCoalesce is how long Kube waits after a change for more changes
// before it builds a Topology.
const DefaultKubeCoalesce = 20 * time.Millisecond

// Kube discovers shards from the Kubernetes API (--kube-service): N is the
// StatefulSet's spec.replicas, shard i is pod <statefulset>-<start+i> where
// start is spec.ordinals.start, and each shard's address and readiness come
// from the EndpointSlices of the headless Service. It needs get, list and
// watch on statefulsets and endpointslices in Namespace.
//
// It keeps client-go informers on the one StatefulSet and on the Service's
// EndpointSlices. Their caches keep the last state through watch errors and
// API server restarts, so an outage never shrinks the ring: Kube keeps
// quiet until the API answers again. client-go retries a refused watch with
// a backoff that grows from 0.8 s to 30 s, so a change made just after a
// long outage can take up to about 30 s to arrive, and the two informers
// may resume a moment apart. A StatefulSet that does not exist (never
// created, or deleted) means no shards: Kube publishes Replicas 0, and the
// proxy answers 503 until it appears.
type Kube struct {
	// Client talks to the API server. Required; see NewKubeClient.
	Client kubernetes.Interface
	// Namespace of the Service and the StatefulSet. Required.
	Namespace string
	// Service is the headless Service whose EndpointSlices carry the pods'
	// addresses. Required.
	Service string
	// StatefulSet names the StatefulSet; "" means Service.
	StatefulSet string
	// Port selects the EndpointSlice port by name or number; "" means the
	// slice's only TCP port. Shards in a slice without that port (or, for "",
	// with several TCP ports) have no address and are not ready; a warning
	// says why.
	Port string
	// Resync is the informers' resync period; 0 means none. Every event
	// rebuilds the Topology from the whole cache, so resyncs only repeat work.
	Resync time.Duration
	// Coalesce is how long to wait after a change for more before building a
	// Topology, so that a burst (a scale, a rollout) yields few publishes;
	// 0 means DefaultKubeCoalesce.
	Coalesce time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var _ Source = (*Kube)(nil)

func (k *Kube) statefulSet() string {
	if k.StatefulSet != "" {
		return k.StatefulSet
	}
	return k.Service
}

// Run watches until ctx is cancelled. It publishes once the caches are
// synced and then after every change of the Topology; it returns nil when
// ctx ends and an error only for a bad configuration. While the API server
// cannot be reached or refuses access at start it waits (the proxy stays
// not ready) and logs why.
func (k *Kube) Run(ctx context.Context, publish func(Topology)) error {
	if k.Client == nil || k.Namespace == "" || k.Service == "" {
		return errors.New("kubernetes discovery needs a client, a namespace and a service")
	}
	log := k.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("source", "kubernetes", "namespace", k.Namespace, "service", k.Service, "statefulset", k.statefulSet())

	ctx, cancel := context.WithCancel(ctx)
	// Both factories stop only after ctx is cancelled: cancel first, then
	// wait for their goroutines.
	var factories []informers.SharedInformerFactory
	defer func() {
		cancel()
		for _, f := range factories {
			f.Shutdown()
		}
	}()

	stsFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, k.Resync,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.statefulSet()).String()
		}))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, k.Resync,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{discoveryv1.LabelServiceName: k.Service}.String()
		}))
	factories = append(factories, stsFactory, sliceFactory)
	stsInformer := stsFactory.Apps().V1().StatefulSets()
	sliceInformer := sliceFactory.Discovery().V1().EndpointSlices()
	stsLister, sliceLister := stsInformer.Lister(), sliceInformer.Lister()

	// Handlers only signal; the worker rebuilds from the caches, so a missed
	// or merged signal loses nothing.
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() }, // the object itself, or a DeletedFinalStateUnknown, is not needed
	}
	for _, inf := range []cache.SharedIndexInformer{stsInformer.Informer(), sliceInformer.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("kubernetes discovery: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, r *cache.Reflector, err error) {
			k.logWatchError(log, r, err)
		}); err != nil {
			return fmt.Errorf("kubernetes discovery: %w", err)
		}
	}
	stsFactory.Start(ctx.Done())
	sliceFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), stsInformer.Informer().HasSynced, sliceInformer.Informer().HasSynced) {
		return nil // ctx ended first
	}
	log.Debug("caches synced")

	w := kubeWorker{
		log:      log,
		coalesce: durationOr(k.Coalesce, DefaultKubeCoalesce),
		build: func() (Topology, []string) {
			sts, err := stsLister.StatefulSets(k.Namespace).Get(k.statefulSet())
			if err != nil {
				sts = nil // NotFound is the only error a lister returns
			}
			epSlices, _ := sliceLister.EndpointSlices(k.Namespace).List(labels.Everything())
			return kubeTopology(sts, epSlices, k.Port)
		},
	}
	signal() // the first Topology, even if no event ever comes
	w.run(ctx, changed, publish)
	return nil
}

// logWatchError reports a failed list or watch. The reflector retries with
// backoff; the caches keep their last state meanwhile.
func (k *Kube) logWatchError(log *slog.Logger, r *cache.Reflector, err error) {
	switch {
	case apierrors.IsForbidden(err):
		log.Error("not allowed to watch; grant get, list and watch on statefulsets and endpointslices",
			"resource", r.TypeDescription(), "error", err)
	case errors.Is(err, context.Canceled):
	default:
		log.Warn("watch failed; retrying, last known topology stays", "resource", r.TypeDescription(), "error", err)
	}
}

// kubeWorker turns change signals into published Topologies.
type kubeWorker struct {
	log      *slog.Logger
	coalesce time.Duration
	build    func() (Topology, []string)

	last      Topology
	published bool
	problems  []string
}

func (w *kubeWorker) run(ctx context.Context, changed <-chan struct{}, publish func(Topology)) {
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		// Let a burst of events settle; signals during the wait merge into
		// at most one more round.
		timer.Reset(w.coalesce)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		w.step(publish)
	}
}

func (w *kubeWorker) step(publish func(Topology)) {
	topo, problems := w.build()
	if !slices.Equal(problems, w.problems) {
		for _, p := range problems {
			w.log.Warn("shards without a usable port", "problem", p)
		}
		w.problems = problems
	}
	if w.published && topo.Replicas == w.last.Replicas && slices.Equal(topo.Shards, w.last.Shards) {
		return
	}
	publish(topo)
	w.logChange(topo)
	w.last, w.published = topo, true
}

func (w *kubeWorker) logChange(topo Topology) {
	ready := 0
	var changes []string
	old := make(map[int]Shard, len(w.last.Shards))
	for _, s := range w.last.Shards {
		old[s.Ordinal] = s
	}
	for _, s := range topo.Shards {
		if s.Ready {
			ready++
		}
		if o, ok := old[s.Ordinal]; !ok || o != s || !w.published {
			changes = append(changes, shardState(s))
		}
		delete(old, s.Ordinal)
	}
	for _, s := range w.last.Shards {
		if _, gone := old[s.Ordinal]; gone {
			changes = append(changes, s.Name+"=removed")
		}
	}
	if topo.Replicas == 0 {
		w.log.Warn("topology changed: no shards (the StatefulSet does not exist)")
		return
	}
	// The proxy logs every applied topology at info level (with its
	// fingerprint); this line adds which shards changed, for debugging.
	w.log.Debug("topology changed", "replicas", topo.Replicas, "ready", ready,
		"previous_replicas", w.last.Replicas, "changed", strings.Join(changes, " "))
}

func shardState(s Shard) string {
	state := "not-ready"
	if s.Ready {
		state = "ready"
	}
	addr := s.Addr
	if addr == "" {
		addr = "-"
	}
	return fmt.Sprintf("%s=%s(%s)", s.Name, addr, state)
}
