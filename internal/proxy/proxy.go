// Package proxy is the data plane's facade: New builds the routing step
// (package route) and the front ends, Serve accepts client connections,
// Shutdown drains them. Each connection starts on the HTTP/1.1 engine
// (package http1); one whose first bytes are the HTTP/2 preface is handed,
// through a callback, to the HTTP/2 relay (package http2), which serves
// every HTTP/2 connection. The front ends never import each other; every one of them asks route for each
// request's owner, and answers errors from package answer under the header
// policy of package header.
package proxy

import (
	"cmp"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/proxy/hotkeys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/http1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/http2"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes        = 4 << 20
	DefaultUpstreamTimeout     = route.DefaultUpstreamTimeout
	DefaultMaxConnsPerShard    = route.DefaultMaxConnsPerShard
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientBodyTimeout   = 60 * time.Second
	DefaultClientWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout         = 90 * time.Second
	DefaultTunnelIdleTimeout   = time.Hour
	DefaultOwnerWaitMax        = route.DefaultOwnerWaitMax
	DefaultHotKeySample        = route.DefaultHotKeySample
)

// DefaultUpgradeProtocols are the upgrades the proxy can route: a
// WebSocket is one stream of one key. (h2c is not: its streams, of any
// key, would all reach the first key's shard.)
var DefaultUpgradeProtocols = []string{"websocket"}

// Config configures a Proxy. The zero value routes by the X-Shard-Key header
// with the defaults below.
type Config struct {
	// Ring is the ring algorithm and its parameters; the zero value is the
	// default jump ring.
	Ring ring.Config
	// Keys are the key rules, tried in order. Nil means keys.DefaultRules.
	Keys []keys.Rule
	// MaxBodyBytes caps what a body rule buffers of a request body; larger
	// bodies get 413. Bodies that no rule reads stream, up to
	// MaxRequestBodyBytes. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// MaxRequestBodyBytes caps every request body: a declared length over
	// it gets 413 before any 100 Continue and before a shard is contacted;
	// a body without one that passes it is cut. Zero means no limit.
	MaxRequestBodyBytes int64
	// MaxBodyDepth is the deepest JSON nesting a body rule reads; deeper
	// bodies get 400. Zero means keys.DefaultMaxBodyDepth.
	MaxBodyDepth int
	// UpgradeProtocols are the protocols an Upgrade request may switch to
	// (names, case-insensitive); the Upgrade field of any other request is
	// not forwarded. Nil means DefaultUpgradeProtocols; empty, none.
	UpgradeProtocols []string
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
	// AccessLog and Tracer receive every request's record (package
	// accesslog, package tracing); nil: none.
	AccessLog route.Recorder
	Tracer    route.Tracer
}

// Proxy is the data plane. Serve, Apply and the accessors are safe for
// concurrent use; requests keep routing on the old snapshot until Apply
// swaps in the new one.
type Proxy struct {
	router *route.Router
	http1  *http1.Server
	relay  *http2.Relay
	srv    listeners

	maxBody int // Config.MaxBodyBytes, for Explain's callers
}

// New returns a Proxy that answers 503 "no shards" until the first Apply.
// Close releases what it holds.
func New(cfg Config) (*Proxy, error) {
	cfg = withDefaults(cfg)
	r, err := route.New(route.Config{Ring: cfg.Ring, Keys: cfg.Keys, MaxBodyDepth: cfg.MaxBodyDepth, UpstreamTimeout: cfg.UpstreamTimeout,
		MaxConnsPerShard: cfg.MaxConnsPerShard, OwnerWait: cfg.OwnerWait, OwnerWaitMax: cfg.OwnerWaitMax,
		HotKeySample: cfg.HotKeySample, Registerer: cfg.Registerer, Logger: cfg.Logger,
		AccessLog: cfg.AccessLog, Tracer: cfg.Tracer})
	if err != nil {
		return nil, err
	}
	p := &Proxy{router: r, maxBody: cfg.MaxBodyBytes}
	p.relay = http2.New(http2.Config{Router: r, UpstreamTimeout: cfg.UpstreamTimeout,
		ClientHeaderTimeout: cfg.ClientHeaderTimeout, ClientWriteTimeout: cfg.ClientWriteTimeout,
		IdleTimeout: cfg.IdleTimeout, MaxRequestBodyBytes: cfg.MaxRequestBodyBytes,
		MaxBodyBytes: cfg.MaxBodyBytes, ClientBodyTimeout: cfg.ClientBodyTimeout, Logger: cfg.Logger})
	p.http1 = http1.New(http1.Config{Router: r, MaxBodyBytes: cfg.MaxBodyBytes, UpstreamTimeout: cfg.UpstreamTimeout,
		ClientHeaderTimeout: cfg.ClientHeaderTimeout, ClientBodyTimeout: cfg.ClientBodyTimeout,
		ClientWriteTimeout: cfg.ClientWriteTimeout, IdleTimeout: cfg.IdleTimeout,
		TunnelIdleTimeout: cfg.TunnelIdleTimeout, UpgradeProtocols: cfg.UpgradeProtocols,
		MaxRequestBodyBytes: cfg.MaxRequestBodyBytes, HandOff: p.handOff, Logger: cfg.Logger})
	return p, nil
}

func withDefaults(cfg Config) Config {
	cfg.MaxBodyBytes = cmp.Or(max(cfg.MaxBodyBytes, 0), DefaultMaxBodyBytes)
	cfg.UpstreamTimeout = cmp.Or(max(cfg.UpstreamTimeout, 0), DefaultUpstreamTimeout)
	cfg.MaxConnsPerShard = cmp.Or(max(cfg.MaxConnsPerShard, 0), DefaultMaxConnsPerShard)
	cfg.ClientHeaderTimeout = cmp.Or(max(cfg.ClientHeaderTimeout, 0), DefaultClientHeaderTimeout)
	cfg.ClientBodyTimeout = cmp.Or(max(cfg.ClientBodyTimeout, 0), DefaultClientBodyTimeout)
	cfg.ClientWriteTimeout = cmp.Or(max(cfg.ClientWriteTimeout, 0), DefaultClientWriteTimeout)
	cfg.IdleTimeout = cmp.Or(max(cfg.IdleTimeout, 0), DefaultIdleTimeout)
	cfg.TunnelIdleTimeout = cmp.Or(max(cfg.TunnelIdleTimeout, 0), DefaultTunnelIdleTimeout)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.UpgradeProtocols == nil {
		cfg.UpgradeProtocols = DefaultUpgradeProtocols
	}
	cfg.MaxRequestBodyBytes = max(cfg.MaxRequestBodyBytes, 0)
	return cfg
}

// handOff takes a connection whose first bytes are the HTTP/2 preface
// from the HTTP/1.1 engine, for the relay.
func (p *Proxy) handOff(nc net.Conn, ip string, pending []byte) bool {
	if !http2.IsPreface(pending) {
		return false
	}
	go p.relay.ServeConn(nc, ip, pending)
	return true
}

// Apply makes topo the routing snapshot (see route.Router.Apply).
func (p *Proxy) Apply(topo watch.Topology) error { return p.router.Apply(topo) }

// Table returns the routing table in force, or nil before the first
// topology was applied: exactly the snapshot the data plane routes with.
func (p *Proxy) Table() *table.Table { return p.router.Table() }

// Keys returns the proxy's key extractor.
func (p *Proxy) Keys() *keys.Extractor { return p.router.Keys() }

// TopologyChanges returns the applied topologies, newest first.
func (p *Proxy) TopologyChanges() []route.TopologyChange { return p.router.TopologyChanges() }

// HotKeys returns the n most frequent keys per shard over the last minute
// (only shard's, when not ""), for the admin plane. Keys appear nowhere
// else: not in metrics, not in logs.
func (p *Proxy) HotKeys(n int, shard string) hotkeys.Answer { return p.router.HotKeys(n, shard) }

// Close closes idle shard connections and stops the background loops.
// Call it after Shutdown.
func (p *Proxy) Close() { p.router.Close() }
