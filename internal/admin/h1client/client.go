// Package h1client is the admin plane's HTTP/1.1 client to shards: it
// sends one request, written once, to many shards at once (a broadcast)
// over pooled connections, and reads each answer with the data plane's
// parser (package h1).
//
// It does what a broadcast needs and no more, in a few system calls and
// allocations per shard: no goroutine per connection (the exchange's own
// goroutine writes the request and waits for the answer, on a plain
// socket with no read that finds nothing yet), no header map per request
// (the head is written once per broadcast; each shard adds its Host), no
// context per request (one per broadcast ends every exchange still
// running). A request whose connection was reused and failed before any
// answer byte (the shard closed it while idle) is sent again on another:
// broadcasts carry an Idempotency-Key, so a shard recognises a repeat.
package h1client

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Target is a shard as the client reaches it; it keys the pools.
type Target struct {
	// Addr is host:port, also sent as Host.
	Addr string
	// TLS: Dial returns a TLS connection whose handshake checked TLSName.
	TLS     bool
	TLSName string
}

// Config configures a Client. Dial is required; the zero value of every
// other field has a default.
type Config struct {
	// Dial opens a connection to t before ctx ends: TCP, or TLS when t.TLS.
	Dial func(ctx context.Context, t Target) (net.Conn, error)
	// MaxConns bounds the connections to one target, in use and idle
	// together; an exchange that finds none free waits for one. 0 means 32.
	MaxConns int
	// IdleTimeout closes a connection idle that long; 0 means 90 s.
	IdleTimeout time.Duration
	// MaxHead bounds an answer's head; 0 means 64 KiB.
	MaxHead int
	// MaxDrain is how much of an answer's body past the caller's limit is
	// read and dropped so that the connection can be reused; a longer body
	// closes it. 0 means 1 MiB.
	MaxDrain int64
}

// Client holds the pools, one per target. Safe for concurrent use.
type Client struct {
	cfg       Config
	mu        sync.RWMutex
	pools     map[Target]*pool
	closed    atomic.Bool
	exchanges sync.Pool // *exchange
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	if cfg.MaxHead <= 0 {
		cfg.MaxHead = 64 << 10
	}
	if cfg.MaxDrain <= 0 {
		cfg.MaxDrain = 1 << 20
	}
	return &Client{cfg: cfg, pools: map[Target]*pool{}}
}

// Close closes the idle connections; those in use close when their
// exchange ends. The Client still works after Close, pooling nothing.
func (c *Client) Close() {
	c.closed.Store(true)
	c.mu.RLock()
	pools := make([]*pool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.RUnlock()
	for _, p := range pools {
		p.closeIdle()
	}
}

// Stats counts the connections open to t: in use (or being dialed) and idle.
func (c *Client) Stats(t Target) (open, idle int) {
	c.mu.RLock()
	p := c.pools[t]
	c.mu.RUnlock()
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, len(p.idle)
}

// poolOf returns t's pool, made on first use.
func (c *Client) poolOf(t Target) *pool {
	c.mu.RLock()
	p := c.pools[t]
	c.mu.RUnlock()
	if p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p = c.pools[t]; p == nil {
		p = &pool{c: c, t: t}
		c.pools[t] = p
	}
	return p
}

// dropIfEmpty forgets p when it holds no connection: the shards of a
// table come and go, their pools with them.
func (c *Client) dropIfEmpty(p *pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == 0 && len(p.waiters) == 0 && c.pools[p.t] == p {
		p.gone = true
		delete(c.pools, p.t)
	}
}

// conn returns a connection to t: an idle one, else a new one.
func (c *Client) conn(g *Group, t Target, deadline time.Time) (*pool, *conn, error) {
	for {
		p := c.poolOf(t)
		cn, err := p.get(g, deadline)
		switch {
		case errors.Is(err, errGone):
			continue
		case err != nil:
			return nil, nil, err
		case cn == nil:
			cn, err = p.dial(g, deadline)
		}
		return p, cn, err
	}
}

var (
	errGone = errors.New("pool dropped")
	// ErrTimeout is what an exchange fails with when its deadline passed
	// before the answer was read, wrapping what was under way.
	ErrTimeout  = errors.New("timeout")
	errDeadline = errors.New("waiting for a connection")
)

// Group is the exchanges of one broadcast: when its context ends, every
// exchange still running ends with its error. Safe for concurrent use;
// Close it when its exchanges are done.
type Group struct {
	c    *Client
	ctx  context.Context
	stop func() bool

	mu    sync.Mutex
	ended bool
	live  []*conn // by exchange index
}

// Group starts a group of up to n exchanges, numbered 0 to n-1, that ctx
// ends.
func (c *Client) Group(ctx context.Context, n int) *Group {
	g := &Group{c: c, ctx: ctx, live: make([]*conn, n)}
	if ctx.Done() != nil {
		g.stop = context.AfterFunc(ctx, g.end)
	}
	return g
}

// Close releases the group's hold on its context.
func (g *Group) Close() {
	if g.stop != nil {
		g.stop()
	}
}

func (g *Group) done() <-chan struct{} { return g.ctx.Done() }

// end interrupts every exchange under way.
func (g *Group) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ended = true
	for _, c := range g.live {
		if c != nil {
			_ = c.nc.SetDeadline(aLongTimeAgo)
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// enter marks c as exchange i's, so that the group's end interrupts it;
// false when the group has ended.
func (g *Group) enter(i int, c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return false
	}
	g.live[i] = c
	return true
}

// leave is enter undone, before c goes back to its pool: once it has
// returned, the group's end no longer touches c.
func (g *Group) leave(i int) {
	g.mu.Lock()
	g.live[i] = nil
	g.mu.Unlock()
}
