// Package proxy is the data plane: it takes each request's shard key, finds
// the owner on one routing snapshot and forwards the request to it. Its
// HTTP/1.1 engine owns the wire: request and response heads are parsed once
// (package h1) and forwarded as received except for the header policy, and
// bodies stream through fixed, pooled buffers.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/ring"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes        = 4 << 20
	DefaultUpstreamTimeout     = 30 * time.Second
	DefaultMaxConnsPerShard    = 8192
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientBodyTimeout   = 60 * time.Second
	DefaultClientWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout         = 90 * time.Second
	DefaultTunnelIdleTimeout   = time.Hour
	DefaultOwnerWaitMax        = 1024
	DefaultHotKeySample        = 16
)

// Config configures a Proxy. The zero value routes by the X-Shard-Key header
// with the defaults below.
type Config struct {
	// Ring is the ring algorithm and its parameters; the zero value is the
	// default jump ring.
	Ring ring.Config
	// Keys are the key rules, tried in order. Nil means DefaultKeyRules.
	Keys []Rule
	// MaxBodyBytes caps what a body rule buffers of a request body; larger
	// bodies get 413. Bodies that no rule reads stream, whatever their
	// size. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// UpstreamTimeout bounds waiting for a shard: for the answer's head
	// after the request was sent, and between two reads of its body. Zero
	// means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// MaxConnsPerShard caps connections to one shard. Zero means
	// DefaultMaxConnsPerShard.
	MaxConnsPerShard int
	// ClientHeaderTimeout bounds receiving a request head from its first
	// byte (408 after). Zero means DefaultClientHeaderTimeout.
	ClientHeaderTimeout time.Duration
	// ClientBodyTimeout bounds the wait between two reads of a request
	// body. Zero means DefaultClientBodyTimeout.
	ClientBodyTimeout time.Duration
	// ClientWriteTimeout bounds a write to a client that does not read.
	// Zero means DefaultClientWriteTimeout.
	ClientWriteTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection idle this long.
	// Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes an upgraded connection (WebSocket) when no
	// byte crossed it either way for this long. Zero means
	// DefaultTunnelIdleTimeout.
	TunnelIdleTimeout time.Duration
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
}

// Proxy is the data plane. Serve, Apply and Table are safe for concurrent
// use; requests keep routing on the old snapshot until Apply swaps in the
// new one.
type Proxy struct {
	cfg     Config
	keys    *Extractor
	metrics *metrics
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
	srv     server
	parker  parker
	h2front h2Front
	h2conns h2Conns // the HTTP/2 relay's client connections
	live    liveSet
	waiting atomic.Int64 // requests held for their owner
	hot     *hotKeys     // nil when sampling is off
	changes changeLog    // the last applied topologies, for /topology

	mu       sync.Mutex // serializes Apply
	backends map[string]*backend
	stop     chan struct{} // ends the janitor
	janitor  sync.WaitGroup
}

// snapshot is what one request routes with: a table and, for each of its
// shards by ring index, the backend that forwards to it.
type snapshot struct {
	table    *table.Table
	backends []*backend
	// next is closed when a newer snapshot replaces this one: requests
	// held for a not-ready owner wait on it.
	next chan struct{}
}

// backend is one shard at one address: its connection pools and metrics.
// HTTP/1.1 requests to an HTTP/1.1 shard use up, the engine's own pool;
// HTTP/2 streams, and anything bound for an h2c shard, use rt, a net/http
// transport made on first use.
type backend struct {
	name    string
	addr    string
	proto   watch.Protocol
	up      *upstream
	metrics *shardMetrics
	dial    func(addr string) (net.Conn, error)

	// writeTimeout bounds a write to the shard on a relay connection.
	writeTimeout time.Duration

	rtMu sync.Mutex
	rt   *http.Transport // made on first use
	h2   *h2pool         // the HTTP/2 relay's connections, made on first use
}

// transport returns the backend's net/http transport: HTTP/2 with prior
// knowledge for an h2c shard, HTTP/1.1 otherwise.
func (b *backend) transport() *http.Transport {
	b.rtMu.Lock()
	defer b.rtMu.Unlock()
	if b.rt == nil {
		var protos http.Protocols
		if b.proto == watch.H2C {
			protos.SetUnencryptedHTTP2(true)
		} else {
			protos.SetHTTP1(true)
		}
		b.rt = &http.Transport{
			Protocols: &protos,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return b.dial(addr)
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     upstreamIdleTimeout,
			DisableCompression:  true,
		}
	}
	return b.rt
}

// closeIdle closes the backend's idle connections; with stop, for good.
func (b *backend) closeIdle(stop bool) {
	b.up.closeIdle(0, stop)
	b.rtMu.Lock()
	rt, h2 := b.rt, b.h2
	b.rtMu.Unlock()
	if rt != nil {
		rt.CloseIdleConnections()
	}
	if h2 != nil {
		h2.closeIdle(0, stop)
	}
}

// New returns a Proxy that answers 503 "no shards" until the first Apply.
// Close releases what it holds.
func New(cfg Config) (*Proxy, error) {
	if cfg.Keys == nil {
		rules, err := ParseRules(DefaultKeyRules)
		if err != nil {
			return nil, err
		}
		cfg.Keys = rules
	}
	cfg.MaxBodyBytes = cmp.Or(max(cfg.MaxBodyBytes, 0), DefaultMaxBodyBytes)
	cfg.UpstreamTimeout = cmp.Or(max(cfg.UpstreamTimeout, 0), DefaultUpstreamTimeout)
	cfg.MaxConnsPerShard = cmp.Or(max(cfg.MaxConnsPerShard, 0), DefaultMaxConnsPerShard)
	cfg.ClientHeaderTimeout = cmp.Or(max(cfg.ClientHeaderTimeout, 0), DefaultClientHeaderTimeout)
	cfg.ClientBodyTimeout = cmp.Or(max(cfg.ClientBodyTimeout, 0), DefaultClientBodyTimeout)
	cfg.ClientWriteTimeout = cmp.Or(max(cfg.ClientWriteTimeout, 0), DefaultClientWriteTimeout)
	cfg.IdleTimeout = cmp.Or(max(cfg.IdleTimeout, 0), DefaultIdleTimeout)
	cfg.TunnelIdleTimeout = cmp.Or(max(cfg.TunnelIdleTimeout, 0), DefaultTunnelIdleTimeout)
	cfg.OwnerWaitMax = cmp.Or(max(cfg.OwnerWaitMax, 0), DefaultOwnerWaitMax)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	p := &Proxy{
		cfg:      cfg,
		keys:     NewExtractor(cfg.Keys),
		metrics:  newMetrics(cfg.Registerer),
		log:      cfg.Logger,
		backends: map[string]*backend{},
		stop:     make(chan struct{}),
	}
	p.janitor.Go(p.sweep)
	if every := cmp.Or(cfg.HotKeySample, DefaultHotKeySample); every > 0 {
		p.hot = &hotKeys{every: uint64(every), started: time.Now()}
		for i := range p.hot.buckets {
			p.hot.buckets[i] = map[int]*spaceSaving{}
		}
		p.janitor.Go(func() { p.hot.run(p.stop) })
	}
	return p, nil
}

// sweep closes shard connections that idled too long, until Close.
func (p *Proxy) sweep() {
	t := time.NewTicker(upstreamIdleTimeout / 5)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for _, b := range p.backends {
			b.up.closeIdle(upstreamIdleTimeout, false)
			b.rtMu.Lock()
			h2 := b.h2
			b.rtMu.Unlock()
			if h2 != nil {
				h2.closeIdle(upstreamIdleTimeout, false)
			}
		}
		p.mu.Unlock()
	}
}

// Table returns the routing table in force, or nil before the first
// topology was applied. Other components (the admin plane) read it, so they
// see exactly the snapshot the data plane routes with.
func (p *Proxy) Table() *table.Table {
	if snap := p.snap.Load(); snap != nil {
		return snap.table
	}
	return nil
}

// Extractor returns the proxy's key extractor.
func (p *Proxy) Extractor() *Extractor { return p.keys }

// Apply is the one place where a Topology becomes the routing snapshot:
// it builds the table (reusing the ring when only addresses or readiness
// changed), pairs each shard with its upstream, swaps the snapshot in, and
// logs the change. It returns an error, and keeps the previous snapshot,
// when the Topology is invalid. Apply calls are serialized; requests keep
// routing with the old snapshot until the swap.
func (p *Proxy) Apply(topo watch.Topology) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.Table()
	t, err := table.Build(p.cfg.Ring, topo, prev)
	if err != nil {
		return fmt.Errorf("applying topology: %w", err)
	}
	p.swap(t)
	p.changes.add(describeChange(prev, t))
	if prev != nil && !table.SameRing(prev, t) {
		p.live.rehome(t) // streams of keys that moved reconnect to the new owner
	}
	p.log.Info("topology applied", "replicas", t.Replicas(), "ready", t.Ready(),
		"fingerprint", t.Fingerprint, "ring_rebuilt", !table.SameRing(prev, t),
		"shards", t.Summary(16))
	return nil
}

// swap publishes t with its backends. Backends of unchanged shards keep
// their pooled connections; those of shards that moved or left are closed
// once idle. p.mu is held.
func (p *Proxy) swap(t *table.Table) {
	next := &snapshot{table: t, backends: make([]*backend, len(t.Shards)), next: make(chan struct{})}
	keep := make(map[string]*backend, len(t.Shards))
	for i, s := range t.Shards {
		id := s.Name + "@" + s.Addr + "/" + string(s.Protocol)
		b := p.backends[id]
		if b == nil {
			b = p.newBackend(s)
		}
		next.backends[i], keep[id] = b, b
	}
	if old := p.snap.Swap(next); old != nil {
		close(old.next) // wakes requests held for their owner
	}
	present := make(map[string]bool, len(t.Shards))
	for _, s := range t.Shards {
		present[s.Name] = true
	}
	for id, b := range p.backends {
		if keep[id] == nil {
			b.closeIdle(true)
			if !present[b.name] {
				p.metrics.forget(b.name)
			}
		}
	}
	p.backends = keep
	p.metrics.topologyUpdates.Inc()
	p.metrics.ringInfo.Reset()
	p.metrics.ringInfo.WithLabelValues(string(t.Config.Algorithm), t.Fingerprint).Set(1)
	ready := t.Ready()
	p.metrics.shards.WithLabelValues("ready").Set(float64(ready))
	p.metrics.shards.WithLabelValues("not_ready").Set(float64(len(t.Shards) - ready))
}

func (p *Proxy) newBackend(s watch.Shard) *backend {
	m := p.metrics.forShard(s.Name)
	dial := dialer(p.cfg.UpstreamTimeout)
	return &backend{
		name: s.Name, addr: s.Addr, proto: s.Protocol, metrics: m, dial: dial, writeTimeout: p.cfg.UpstreamTimeout,
		up: &upstream{name: s.Name, addr: s.Addr, metrics: m, dial: dial, maxConns: p.cfg.MaxConnsPerShard},
	}
}

// dialer bounds connecting by the smaller of timeout and 5s. A connect that
// fails, timing out included, means the shard is unreachable (502), not
// slow (504).
func dialer(timeout time.Duration) func(addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	return func(addr string) (net.Conn, error) {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errDial, err)
		}
		return c, nil
	}
}

var errDial = errors.New("connecting to the shard")

// Close closes idle shard connections and stops the background sweep. Call
// it after Shutdown.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	for _, b := range p.backends {
		b.closeIdle(false)
	}
	p.mu.Unlock()
	p.janitor.Wait()
}
