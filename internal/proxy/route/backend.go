package route

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// UpstreamIdleTimeout closes a pooled shard connection unused for this
// long; shards commonly close theirs after 60–120 s.
const UpstreamIdleTimeout = 50 * time.Second

// Backend is one shard at one address: how to reach it, its metrics, and
// the connection pools the front ends keep to it (one per kind, made on
// first use). A Backend lives as long as its shard keeps its name, address
// and protocol; then its pools are stopped and closed once idle.
type Backend struct {
	// Name, Addr and Protocol are the shard's, as in the topology.
	Name     string
	Addr     string
	Protocol watch.Protocol
	// Metrics are the shard's series.
	Metrics *ShardMetrics
	// MaxConns caps the connections one pool opens to the shard.
	MaxConns int
	// TLS and TLSName are the shard's (see watch.Shard): Dial then
	// returns a *tls.Conn whose peer proved it is TLSName.
	TLS     bool
	TLSName string

	shardTLS  *certs.ShardClient
	identity  identity
	timeout   time.Duration
	ownerWait time.Duration

	dial  func(addr string) (net.Conn, error)
	pools [numPools]atomic.Pointer[Pool]

	mu      sync.Mutex // serializes making pools and the transport
	stopped bool
	rt      *http.Transport
}

// Pool is a front end's connections to one backend.
type Pool interface {
	// CloseIdle closes connections idle for maxIdle or longer (every idle
	// one when 0); with stop, the pool keeps none from now on: its shard
	// left or moved.
	CloseIdle(maxIdle time.Duration, stop bool)
	// Stats tells what the pool holds now.
	Stats() PoolStats
}

// PoolStats is what a pool holds: connections open (idle ones included),
// idle ones, and streams open on them (HTTP/2).
type PoolStats struct {
	Open, Idle, Streams int
}

// PoolStats tells what the backend's pool of kind k holds now (zero when
// it was never made).
func (b *Backend) PoolStats(k PoolKind) PoolStats {
	if p := b.pools[k].Load(); p != nil {
		return (*p).Stats()
	}
	return PoolStats{}
}

// PoolKind names a front end's pool on a backend.
type PoolKind int

// The pools a backend may hold.
const (
	PoolHTTP1 PoolKind = iota // the HTTP/1.1 engine's connections
	PoolHTTP2                 // the HTTP/2 relay's multiplexed connections
	numPools
)

func (r *Router) newBackend(s watch.Shard) *Backend {
	return &Backend{Name: s.Name, Addr: s.Addr, Protocol: s.Protocol, Metrics: r.metrics.forShard(s.Name),
		MaxConns: r.cfg.MaxConnsPerShard, dial: r.dial, TLS: s.TLS, TLSName: s.TLSName,
		shardTLS: r.cfg.ShardTLS, timeout: min(r.cfg.UpstreamTimeout, 5*time.Second), ownerWait: r.cfg.OwnerWait}
}

// Dial connects to the shard. A connect that fails, timing out included,
// wraps answer.ErrShardDown: the shard is unreachable (502), not slow (504).
// For a TLS shard it returns the connection after a handshake in which
// the shard proved its identity; a failed one wraps answer.ErrShardIdentity
// or answer.ErrShardTLS (see tls.go). When another shard answers at the
// address, Dial holds (up to --owner-wait, looking again every second)
// for the right one to be back there, as a request for a not-ready owner
// is held; every caller dials on a goroutine that may block.
func (b *Backend) Dial() (net.Conn, error) {
	nc, err := b.dialOnce()
	if err == nil || !b.Mismatched() || b.ownerWait <= 0 {
		return nc, err
	}
	return b.holdForIdentity(err)
}

func (b *Backend) dialOnce() (net.Conn, error) {
	nc, err := b.dial(b.Addr)
	if err != nil || !b.TLS {
		return nc, err
	}
	return b.handshake(nc)
}

// Pool returns the backend's pool of kind k, made with newPool on first use.
func (b *Backend) Pool(k PoolKind, newPool func(*Backend) Pool) Pool {
	if p := b.pools[k].Load(); p != nil {
		return *p
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.pools[k].Load(); p != nil {
		return *p
	}
	p := newPool(b)
	if b.stopped {
		p.CloseIdle(0, true)
	}
	b.pools[k].Store(&p)
	return p
}

// Transport returns the backend's net/http transport, made on first use:
// HTTP/2 with prior knowledge for an h2c shard, HTTP/1.1 otherwise. The
// net/http front end and the HTTP/1.1-to-h2c bridge use it.
func (b *Backend) Transport() *http.Transport {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rt == nil {
		var protos http.Protocols
		if b.Protocol == watch.H2C {
			protos.SetUnencryptedHTTP2(true)
		} else {
			protos.SetHTTP1(true)
		}
		if b.TLS {
			protos = http.Protocols{}
			protos.SetHTTP1(b.Protocol != watch.H2C)
			protos.SetHTTP2(b.Protocol == watch.H2C)
		}
		b.rt = &http.Transport{
			Protocols: &protos,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return b.dial(addr)
			},
			// An https URL (a TLS shard): the connection comes handshaken,
			// its identity checked, from Dial.
			DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
				return b.Dial()
			},
			MaxIdleConnsPerHost:    64,
			IdleConnTimeout:        UpstreamIdleTimeout,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10, // as the relay and the HTTP/1.1 engine bound an answer's head
		}
	}
	return b.rt
}

// closeIdle closes the backend's idle connections, in every pool; with
// stop, for good.
func (b *Backend) closeIdle(maxIdle time.Duration, stop bool) {
	b.mu.Lock()
	b.stopped = b.stopped || stop
	rt := b.rt
	b.mu.Unlock()
	for i := range b.pools {
		if p := b.pools[i].Load(); p != nil {
			(*p).CloseIdle(maxIdle, stop)
		}
	}
	if rt != nil && (maxIdle == 0 || stop) {
		rt.CloseIdleConnections()
	}
}

// dialer bounds connecting by the smaller of timeout and 5s.
func dialer(timeout time.Duration) func(addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	return func(addr string) (net.Conn, error) {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", answer.ErrShardDown, err)
		}
		return c, nil
	}
}
