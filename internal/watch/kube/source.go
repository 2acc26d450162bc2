// Package kube discovers shards from the Kubernetes API (--kube-service):
// the StatefulSet gives N and the shard names, the EndpointSlices of its
// headless Service give addresses and readiness. It is the only internal
// package that links client-go, and nothing past it sees an API object.
package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// DefaultCoalesce is how long a Source waits after a change for more
// changes before it builds a Topology.
const DefaultCoalesce = 20 * time.Millisecond

// Source discovers shards from the Kubernetes API (--kube-service): N is the
// StatefulSet's spec.replicas, or the N its AnnotationReplicas pins; shard i
// is pod <statefulset>-<start+i> where start is spec.ordinals.start, and
// each shard's address and readiness come from the EndpointSlices of the
// headless Service. Its informers list and watch statefulsets and
// endpointslices in Namespace (the example Role, and the message logged
// when access is refused, ask for get as well).
//
// It keeps client-go informers on the one StatefulSet and on the Service's
// EndpointSlices. Their caches keep the last state through watch errors and
// API server restarts, so an outage never shrinks the ring: the Source
// publishes nothing until the API answers again. client-go retries a
// refused watch with a backoff that grows from 0.8 s to 30 s, each delay
// stretched by a random jitter of up to as much again, so a change made
// just after a long outage can take up to about a minute to arrive; each
// informer has a backoff of its own, so the two may resume many seconds
// apart. A StatefulSet that does not exist (never created, or deleted)
// means no shards: the Source publishes a Topology with Replicas 0, and the
// proxy answers 503 until it appears.
type Source struct {
	// Client talks to the API server. Required; see NewClient.
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
	// 0 means DefaultCoalesce.
	Coalesce time.Duration
	// TLS makes every shard a TLS shard, as the Service annotation
	// AnnotationShardTLS or a port's appProtocol https do.
	TLS bool
	// ServerName is the template of the name a TLS shard's certificate is
	// verified for (watch.ServerName); "" means watch.DefaultServerName.
	// Domain is the cluster domain it uses; "" means cluster.local.
	ServerName, Domain string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var _ watch.Source = (*Source)(nil)

func (k *Source) statefulSet() string {
	if k.StatefulSet != "" {
		return k.StatefulSet
	}
	return k.Service
}

// Run watches until ctx is cancelled. It publishes once the caches are
// synced and then after every change of the Topology; it returns nil when
// ctx ends and an error only for a bad configuration. While the API server
// cannot be reached or refuses access at start it waits (the proxy stays
// not ready) and logs why. A Topology that publish rejects is logged and
// offered again after a delay, never taken as in force.
func (k *Source) Run(ctx context.Context, publish watch.Publish) error {
	if k.Client == nil || k.Namespace == "" || k.Service == "" {
		return errors.New("kubernetes discovery needs a client, a namespace and a service")
	}
	log := cmp.Or(k.Logger, slog.Default())
	log = log.With("source", "kubernetes", "namespace", k.Namespace, "service", k.Service, "statefulset", k.statefulSet())

	ctx, cancel := context.WithCancel(ctx)
	// The factories stop only after ctx is cancelled: cancel first, then
	// wait for their goroutines.
	inf := k.informers()
	defer func() {
		cancel()
		inf.shutdown()
	}()
	// Handlers only signal; the worker rebuilds from the caches, so a missed
	// or merged signal loses nothing.
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if err := inf.watch(ctx, log, signal); err != nil {
		return fmt.Errorf("kubernetes discovery: %w", err)
	}
	if !inf.sync(ctx) {
		return nil // ctx ended first
	}
	log.Debug("caches synced")
	allTLS := k.TLS || k.serviceSaysTLS(ctx, log)
	build := func() (watch.Topology, []string, error) {
		topo, problems, err := inf.topology()
		k.nameTLS(&topo, allTLS)
		return topo, problems, err
	}
	w := worker{log: log, coalesce: cmp.Or(k.Coalesce, DefaultCoalesce), build: build}
	signal() // the first Topology, even if no event ever comes
	w.run(ctx, changed, publish)
	return nil
}

// informerSet is the two informers Run keeps: one on the StatefulSet, one
// on the Service's EndpointSlices.
type informerSet struct {
	src       *Source
	factories []informers.SharedInformerFactory
	sts       cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	stsList   appslisters.StatefulSetNamespaceLister
	sliceList discoverylisters.EndpointSliceNamespaceLister
}

func (k *Source) informers() *informerSet {
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
	sts := stsFactory.Apps().V1().StatefulSets()
	sl := sliceFactory.Discovery().V1().EndpointSlices()
	// Listers are taken before the factories start, so that their
	// informers are registered and started with them.
	return &informerSet{
		src:       k,
		factories: []informers.SharedInformerFactory{stsFactory, sliceFactory},
		sts:       sts.Informer(),
		slices:    sl.Informer(),
		stsList:   sts.Lister().StatefulSets(k.Namespace),
		sliceList: sl.Lister().EndpointSlices(k.Namespace),
	}
}

// watch registers signal on both informers and starts them.
func (s *informerSet) watch(ctx context.Context, log *slog.Logger, signal func()) error {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() }, // the object itself, or a DeletedFinalStateUnknown, is not needed
	}
	for _, inf := range []cache.SharedIndexInformer{s.sts, s.slices} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, r *cache.Reflector, err error) {
			logWatchError(log, r, err)
		}); err != nil {
			return err
		}
	}
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	return nil
}

func (s *informerSet) sync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), s.sts.HasSynced, s.slices.HasSynced)
}

func (s *informerSet) shutdown() {
	for _, f := range s.factories {
		f.Shutdown()
	}
}

// topology builds the Topology from the caches. problems lists shards whose
// port could not be chosen; an error means the caches could not be read,
// and nothing may be published from them.
func (s *informerSet) topology() (watch.Topology, []string, error) {
	k := s.src
	sts, err := s.stsList.Get(k.statefulSet())
	if apierrors.IsNotFound(err) {
		sts, err = nil, nil
	}
	if err != nil {
		return watch.Topology{}, nil, fmt.Errorf("reading the StatefulSet from the cache: %w", err)
	}
	epSlices, err := s.sliceList.List(labels.Everything())
	if err != nil {
		return watch.Topology{}, nil, fmt.Errorf("listing EndpointSlices from the cache: %w", err)
	}
	topo, problems := kubeTopology(sts, epSlices, k.Port)
	return topo, problems, nil
}

// logWatchError reports a failed list or watch. The reflector retries with
// backoff; the caches keep their last state meanwhile.
func logWatchError(log *slog.Logger, r *cache.Reflector, err error) {
	switch {
	case apierrors.IsForbidden(err):
		log.Error("not allowed to watch; grant get, list and watch on statefulsets and endpointslices",
			"resource", r.TypeDescription(), "error", err)
	case errors.Is(err, context.Canceled):
	default:
		log.Warn("watch failed; retrying, last known topology stays", "resource", r.TypeDescription(), "error", err)
	}
}

// Retry delays after publish rejected a Topology: doubling from the first
// to the last.
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// worker turns change signals into published Topologies. It alone runs
// build and publish, so neither needs to be safe for concurrent use.
type worker struct {
	log      *slog.Logger
	coalesce time.Duration
	build    func() (watch.Topology, []string, error)

	last      watch.Topology // the last Topology publish accepted
	published bool
	problems  []string
	// failure is the last failure logged (a build or publish error), so
	// that a repeated failure is logged once; retries counts them.
	failure string
	retries int
	retry   *time.Timer
}

func (w *worker) run(ctx context.Context, changed <-chan struct{}, publish watch.Publish) {
	timer := time.NewTimer(0)
	<-timer.C
	w.retry = time.NewTimer(0)
	<-w.retry.C
	defer w.retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-w.retry.C:
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

func (w *worker) step(publish watch.Publish) {
	topo, problems, err := w.build()
	if err != nil {
		w.fail("cannot read the cluster state; keeping the last topology", err)
		return
	}
	if !slices.Equal(problems, w.problems) {
		for _, p := range problems {
			w.log.Warn("shards without a usable port", "problem", p)
		}
		w.problems = problems
	}
	if w.published && topo.Equal(w.last) {
		w.recovered()
		return
	}
	if err := publish(topo); err != nil {
		w.fail("topology rejected; keeping the previous one", err)
		return
	}
	w.recovered()
	w.logChange(topo)
	w.last, w.published = topo, true
}

// fail logs err (once while it repeats) and schedules another attempt, so
// that a Topology that was not applied is never taken as in force.
func (w *worker) fail(msg string, err error) {
	delay := min(retryFirst<<min(w.retries, 5), retryMax)
	w.retries++
	if err.Error() != w.failure {
		w.log.Error(msg, "err", err, "retry_in", delay.String())
		w.failure = err.Error()
	}
	w.retry.Reset(delay)
}

func (w *worker) recovered() {
	if w.failure != "" {
		w.log.Info("topology source recovered")
	}
	w.failure, w.retries = "", 0
}

func (w *worker) logChange(topo watch.Topology) {
	ready := 0
	var changes []string
	old := make(map[int]watch.Shard, len(w.last.Shards))
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

func shardState(s watch.Shard) string {
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
