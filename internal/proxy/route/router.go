// Package route is the routing step, written once for every front end: the
// snapshot a request routes with (ring and shards, built by Apply and swapped
// in atomically), its key, its owner, the hold for a not-ready owner, the
// handoff to a new owner, the hot-key sample, live streams that end when
// their key moves, and the data plane's metrics. Front ends (HTTP/1.1, the
// HTTP/2 relay) ask it and repeat none of it; each request leaves one Decision, the record its access log line and span are
// made from.
package route

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/proxy/hotkeys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Defaults of Config.
const (
	DefaultUpstreamTimeout  = 30 * time.Second
	DefaultMaxConnsPerShard = 8192
	DefaultOwnerWaitMax     = 1024
	DefaultHotKeySample     = 16
)

// Config configures a Router. The zero value routes by the X-Shard-Key
// header with the defaults below.
type Config struct {
	// Ring is the ring algorithm and its parameters; the zero value is the
	// default jump ring.
	Ring ring.Config
	// Keys are the key rules, tried in order. Nil means keys.DefaultRules.
	Keys []keys.Rule
	// MaxBodyDepth is the deepest JSON nesting a body rule reads. Zero
	// means keys.DefaultMaxBodyDepth.
	MaxBodyDepth int
	// UpstreamTimeout bounds connecting to a shard (with at most 5 s).
	// Zero means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// MaxConnsPerShard caps the connections one front end opens to one
	// shard. Zero means DefaultMaxConnsPerShard.
	MaxConnsPerShard int
	// OwnerWait holds a request whose owner is not ready for up to this
	// long, for a topology change that makes it ready; 0 answers 503 at
	// once.
	OwnerWait time.Duration
	// OwnerWaitMax caps the requests held at once; beyond it, 503 at once.
	// Zero means DefaultOwnerWaitMax.
	OwnerWaitMax int
	// HotKeySample samples one request in this many for /hotkeys; 0 means
	// DefaultHotKeySample, a negative value turns sampling off.
	HotKeySample int
	// Registerer receives the data-plane metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger logs topology changes; nil means slog.Default().
	Logger *slog.Logger
	// Tracer makes each request's span; nil: no tracing.
	Tracer Tracer
	// AccessLog writes each request's log line; nil: no access log.
	AccessLog Recorder
}

// Router holds the routing snapshot and takes every request's routing
// step. Apply, Route, Wait, Done and the accessors are safe for concurrent
// use; requests keep routing on the old snapshot until Apply swaps in the
// new one.
type Router struct {
	cfg     Config
	keys    *keys.Extractor
	metrics *metrics
	log     *slog.Logger
	snap    atomic.Pointer[Snapshot]
	live    liveSet
	waiting atomic.Int64     // requests held for their owner
	hot     *hotkeys.Sampler // nil when sampling is off
	changes changeLog        // the last applied topologies, for /topology
	dial    func(addr string) (net.Conn, error)

	mu       sync.Mutex // serializes Apply, guards backends
	backends map[string]*Backend
	stop     chan struct{} // ends the background loops
	loops    sync.WaitGroup
}

// Snapshot is what one request routes with: a table and, for each of its
// shards by ring index, the backend that forwards to it. It is immutable.
type Snapshot struct {
	Table    *table.Table
	Backends []*Backend
	// Generation counts the topologies applied in this process: 1 for the
	// first, one more for each Apply since (a watcher's event id).
	Generation uint64
	// next is closed when a newer snapshot replaces this one: requests
	// held for a not-ready owner wait on it.
	next chan struct{}
}

// New returns a Router that answers "no shards" until the first Apply.
// Close stops its background loops.
func New(cfg Config) (*Router, error) {
	if cfg.Keys == nil {
		rules, err := keys.ParseRules(keys.DefaultRules)
		if err != nil {
			return nil, err
		}
		cfg.Keys = rules
	}
	cfg.UpstreamTimeout = cmp.Or(max(cfg.UpstreamTimeout, 0), DefaultUpstreamTimeout)
	cfg.MaxConnsPerShard = cmp.Or(max(cfg.MaxConnsPerShard, 0), DefaultMaxConnsPerShard)
	cfg.OwnerWaitMax = cmp.Or(max(cfg.OwnerWaitMax, 0), DefaultOwnerWaitMax)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	r := &Router{
		cfg:      cfg,
		keys:     keys.NewExtractor(cfg.Keys, cfg.MaxBodyDepth),
		metrics:  newMetrics(cfg.Registerer),
		log:      cfg.Logger,
		dial:     dialer(cfg.UpstreamTimeout),
		backends: map[string]*Backend{},
		stop:     make(chan struct{}),
	}
	r.loops.Go(r.sweep)
	if every := cmp.Or(cfg.HotKeySample, DefaultHotKeySample); every > 0 {
		r.hot = hotkeys.New(every)
		r.loops.Go(func() { r.hot.Run(r.stop) })
	}
	return r, nil
}

// Keys returns the key extractor every front end uses.
func (r *Router) Keys() *keys.Extractor { return r.keys }

// OwnerWait is the configured hold for a not-ready owner.
func (r *Router) OwnerWait() time.Duration { return r.cfg.OwnerWait }

// MaxConnsPerShard is the cap on one front end's connections to one shard.
func (r *Router) MaxConnsPerShard() int { return r.cfg.MaxConnsPerShard }

// Snapshot returns the snapshot in force, or nil before the first Apply.
func (r *Router) Snapshot() *Snapshot { return r.snap.Load() }

// Table returns the routing table in force, or nil before the first
// topology was applied. Other components (the admin plane) read it, so they
// see exactly the snapshot the data plane routes with.
func (r *Router) Table() *table.Table {
	if snap := r.snap.Load(); snap != nil {
		return snap.Table
	}
	return nil
}

// HotKeys returns the n most frequent keys per shard over the last minute
// (only shard's, when not ""), for the admin plane.
func (r *Router) HotKeys(n int, shard string) hotkeys.Answer {
	snap := r.snap.Load()
	if snap == nil {
		return r.hot.Top(n, shard, nil)
	}
	names := make([]string, len(snap.Table.Shards))
	for i, s := range snap.Table.Shards {
		names[i] = s.Name
	}
	return r.hot.Top(n, shard, names)
}

// Backends returns the backends of the snapshot in force, in no order.
func (r *Router) Backends() []*Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Backend, 0, len(r.backends))
	for _, b := range r.backends {
		out = append(out, b)
	}
	return out
}

// Apply is the one place where a Topology becomes the routing snapshot:
// it builds the table (reusing the ring when only addresses or readiness
// changed), pairs each shard with its backend, swaps the snapshot in, and
// logs the change. It returns an error, and keeps the previous snapshot,
// when the Topology is invalid. Apply calls are serialized; requests keep
// routing with the old snapshot until the swap.
func (r *Router) Apply(topo watch.Topology) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.Table()
	t, err := table.Build(r.cfg.Ring, topo, prev)
	if err != nil {
		return fmt.Errorf("applying topology: %w", err)
	}
	r.swap(t)
	r.changes.add(describeChange(prev, t))
	if prev != nil && !table.SameRing(prev, t) {
		r.live.rehome(t) // streams of keys that moved reconnect to the new owner
	}
	r.log.Info("topology applied", "replicas", t.Replicas(), "ready", t.Ready(),
		"fingerprint", t.Fingerprint, "ring_rebuilt", !table.SameRing(prev, t),
		"shards", t.Summary(16))
	return nil
}

// swap publishes t with its backends. Backends of unchanged shards keep
// their pooled connections; those of shards that moved or left are closed
// once idle. r.mu is held.
func (r *Router) swap(t *table.Table) {
	next := &Snapshot{Table: t, Backends: make([]*Backend, len(t.Shards)), Generation: 1, next: make(chan struct{})}
	if old := r.snap.Load(); old != nil {
		next.Generation = old.Generation + 1
	}
	keep := make(map[string]*Backend, len(t.Shards))
	for i, s := range t.Shards {
		id := s.Name + "@" + s.Addr + "/" + string(s.Protocol)
		b := r.backends[id]
		if b == nil {
			b = r.newBackend(s)
		}
		next.Backends[i], keep[id] = b, b
	}
	if old := r.snap.Swap(next); old != nil {
		close(old.next) // wakes requests held for their owner
	}
	present := make(map[string]bool, len(t.Shards))
	for _, s := range t.Shards {
		present[s.Name] = true
	}
	for id, b := range r.backends {
		if keep[id] == nil {
			b.closeIdle(0, true)
			if !present[b.Name] {
				r.metrics.forget(b.Name)
			}
		}
	}
	r.backends = keep
	r.metrics.topologyApplied(t)
}

// sweep closes shard connections that idled too long, until Close.
func (r *Router) sweep() {
	t := time.NewTicker(UpstreamIdleTimeout / 5)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		for _, b := range r.backends {
			b.closeIdle(UpstreamIdleTimeout, false)
		}
		r.mu.Unlock()
	}
}

// Close closes idle shard connections and stops the background loops.
// Call it after the front ends shut down.
func (r *Router) Close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	for _, b := range r.backends {
		b.closeIdle(0, false)
	}
	r.mu.Unlock()
	r.loops.Wait()
}
