// Package proxy is the data plane: it takes each request's shard key, finds
// the owner on one routing snapshot and forwards the request to it.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/shard-proxy/shard-proxy/internal/ring"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes     = 4 << 20
	DefaultUpstreamTimeout  = 30 * time.Second
	DefaultMaxConnsPerShard = 8192
	// DefaultClientTimeout bounds reading one request from a client, and
	// writing one answer to it.
	DefaultClientTimeout = 60 * time.Second
)

// Config configures a Proxy. The zero value routes by the X-Shard-Key header
// with the defaults below.
type Config struct {
	// Ring is the ring algorithm and its parameters; the zero value is the
	// default jump ring.
	Ring ring.Config
	// Keys are the key rules, tried in order. Nil means DefaultKeyRules.
	Keys []Rule
	// MaxBodyBytes caps the request body the proxy reads and forwards;
	// larger bodies get 413. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// UpstreamTimeout bounds one forwarded request, from sending it to
	// having the whole response. Zero means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// MaxConnsPerShard caps pooled connections to one shard. Zero means
	// DefaultMaxConnsPerShard.
	MaxConnsPerShard int
	// Registerer receives the data-plane metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger logs topology changes; nil means slog.Default().
	Logger *slog.Logger
}

// Proxy is the data plane. Its handler is safe for concurrent use; Update
// may run concurrently with requests.
type Proxy struct {
	cfg     Config
	keys    *Extractor
	metrics *metrics
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]

	mu       sync.Mutex // serializes Apply
	backends map[string]*backend
}

// snapshot is what one request routes with: a table and, for each of its
// shards by ring index, the backend that forwards to it.
type snapshot struct {
	table    *table.Table
	backends []*backend
}

// backend forwards to one shard at one address over pooled keep-alive
// connections.
type backend struct {
	name    string
	addr    string
	client  *fasthttp.HostClient
	metrics *shardMetrics
}

// New returns a Proxy that answers 503 "no shards" until the first Apply.
func New(cfg Config) (*Proxy, error) {
	if cfg.Keys == nil {
		rules, err := ParseRules(DefaultKeyRules)
		if err != nil {
			return nil, err
		}
		cfg.Keys = rules
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.MaxConnsPerShard <= 0 {
		cfg.MaxConnsPerShard = DefaultMaxConnsPerShard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{
		cfg:      cfg,
		keys:     NewExtractor(cfg.Keys),
		metrics:  newMetrics(cfg.Registerer),
		log:      cfg.Logger,
		backends: map[string]*backend{},
	}, nil
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
	p.log.Info("topology applied", "replicas", t.Replicas(), "ready", t.Ready(),
		"fingerprint", t.Fingerprint, "ring_rebuilt", !table.SameRing(prev, t),
		"shards", t.Summary(16))
	return nil
}

// swap publishes t with its backends. Backends of unchanged shards keep
// their pooled connections; those of shards that moved or left are closed
// once idle. p.mu is held.
func (p *Proxy) swap(t *table.Table) {
	next := &snapshot{table: t, backends: make([]*backend, len(t.Shards))}
	keep := make(map[string]*backend, len(t.Shards))
	for i, s := range t.Shards {
		id := s.Name + "@" + s.Addr
		b := p.backends[id]
		if b == nil {
			b = p.newBackend(s.Name, s.Addr)
		}
		next.backends[i], keep[id] = b, b
	}
	p.snap.Store(next)
	present := make(map[string]bool, len(t.Shards))
	for _, s := range t.Shards {
		present[s.Name] = true
	}
	for id, b := range p.backends {
		if keep[id] == nil {
			b.client.CloseIdleConnections()
			if !present[b.name] {
				p.metrics.forget(b.name)
			}
		}
	}
	p.backends = keep
	p.metrics.topologyUpdates.Inc()
	ready := t.Ready()
	p.metrics.shards.WithLabelValues("ready").Set(float64(ready))
	p.metrics.shards.WithLabelValues("not_ready").Set(float64(len(t.Shards) - ready))
}

func (p *Proxy) newBackend(name, addr string) *backend {
	return &backend{
		name:    name,
		addr:    addr,
		metrics: p.metrics.forShard(name),
		client: &fasthttp.HostClient{
			Addr:                     addr,
			NoDefaultUserAgentHeader: true,
			// Header names stay normalized: hop-by-hop headers are found
			// and stripped whatever case a shard (or a sidecar) sends.
			DisablePathNormalizing: true,
			MaxConns:               p.cfg.MaxConnsPerShard,
			// A GET, HEAD or PUT that failed on a pooled connection the
			// shard had closed is sent once more, on a new connection, to
			// the same shard.
			MaxIdemponentCallAttempts: 2,
			MaxIdleConnDuration:       60 * time.Second,
			ReadBufferSize:            8192,
			WriteBufferSize:           8192,
			// A shard's write timeout is covered by the request deadline;
			// dialing gets its own bound so a dead address fails as 502 fast.
			Dial: dialer(p.cfg.UpstreamTimeout),
		},
	}
}

// dialer bounds connecting by the smaller of timeout and 5s. It is a plain
// net.Dialer: fasthttp's TCPDialer starts a DNS-cache goroutine that never
// ends, one per backend, and shard addresses are IPs or names that
// discovery already resolved. A connect that times out is reported as
// fasthttp.ErrDialTimeout, so that it maps to 502 (unreachable), not to
// 504 (a shard too slow to answer).
func dialer(timeout time.Duration) fasthttp.DialFunc {
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	return func(addr string) (net.Conn, error) {
		c, err := d.Dial("tcp", addr)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%w: %v", fasthttp.ErrDialTimeout, err)
		}
		return c, err
	}
}

// Close closes idle upstream connections. Call it after the server stopped.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.backends {
		b.client.CloseIdleConnections()
	}
}

// Server returns a fasthttp server for the data plane, with the body limit
// and the JSON answers for errors met before the handler runs.
func (p *Proxy) Server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               p.ServeFastHTTP,
		ErrorHandler:          p.serverError,
		MaxRequestBodySize:    p.cfg.MaxBodyBytes,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		ReadBufferSize:        16 << 10,
		// A client that connects and never finishes its request, or never
		// reads the answer, does not hold a connection forever.
		ReadTimeout:     DefaultClientTimeout,
		WriteTimeout:    DefaultClientTimeout,
		IdleTimeout:     90 * time.Second,
		CloseOnShutdown: true,
		Name:            "shard-proxy",
		Logger:          debugLogger{p.log},
	}
}

// debugLogger carries fasthttp's own messages (mostly connections that
// clients closed mid-request) into the structured log at debug level.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
	}
}
