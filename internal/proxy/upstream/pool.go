// Package upstream holds the pooled HTTP/1.1 connections to shards that the
// front ends share: the HTTP/1.1 engine and the HTTP/2 relay take a
// connection per exchange and give it back when the exchange ended cleanly
// on a message boundary.
package upstream

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// maxIdle bounds the idle connections kept per shard address.
const maxIdle = 256

// Conn is one connection to a shard. Between exchanges it sits in its
// shard's pool, holding no buffer.
type Conn struct {
	NC net.Conn
	FD int // NC's socket (under TLS, the socket under it), for sock.Peek; -1 if none
	// tls: NC is a TLS connection, whose shard may send records (session
	// tickets) nobody asked for: only a hang-up makes it unusable.
	tls bool
	// Reused tells whether the connection served an exchange before, so
	// that a failure before any answer byte may be retried on a fresh one.
	Reused bool
	idleAt time.Time
	lean   sock.Lean // reads NC without a buffer held while waiting (not under TLS)
}

// ReadLean reads once from the shard into b's buffer, which it takes only
// when bytes (or a close) are there: an exchange waiting for its shard's
// answer holds no buffer. Under TLS the buffer is taken first.
func (c *Conn) ReadLean(b sock.Buffer) (int, error) { return sock.ReadOnce(&c.lean, c.NC, b) }

// WriteReadLean writes a request, then reads the first bytes of its answer
// as ReadLean does (sock.WriteThenRead): on a plain socket one system call
// less than a write and a read. writeDeadline bounds a write the socket
// cannot take at once; the read deadline is the caller's.
func (c *Conn) WriteReadLean(p []byte, b sock.Buffer, writeDeadline time.Time) (int, error) {
	return sock.WriteThenRead(&c.lean, c.NC, p, b, writeDeadline)
}

// Pool is the HTTP/1.1 connections to one shard at one address (one
// route.Backend). Safe for concurrent use.
type Pool struct {
	b *route.Backend

	mu     sync.Mutex
	idle   []*Conn // LIFO: the warmest connection is reused first
	open   int     // idle and in use
	closed bool
}

var _ route.Pool = (*Pool)(nil)

// PoolOf returns the HTTP/1.1 pool of b, made on first use.
func PoolOf(b *route.Backend) *Pool {
	return b.Pool(route.PoolHTTP1, func(b *route.Backend) route.Pool { return &Pool{b: b} }).(*Pool)
}

// Get returns a pooled connection, or dials a new one when none is idle;
// before a dial it calls beforeDial (if not nil), so that a caller about to
// wait for the dial can give back the buffers it holds. It fails with
// answer.ErrShardBusy at MaxConns, answer.ErrShardDown when the dial fails.
func (u *Pool) Get(beforeDial func()) (*Conn, error) {
	for {
		u.mu.Lock()
		if n := len(u.idle); n > 0 {
			c := u.idle[n-1]
			u.idle[n-1] = nil
			u.idle = u.idle[:n-1]
			u.mu.Unlock()
			// Looked at on every reuse, however recent (one non-blocking
			// peek): bytes a shard wrote past its last answer would
			// otherwise become the next client's answer.
			if !c.usable() {
				u.Discard(c)
				continue
			}
			return c, nil
		}
		if u.open >= u.b.MaxConns {
			u.mu.Unlock()
			return nil, answer.ErrShardBusy
		}
		u.open++
		u.mu.Unlock()
		if beforeDial != nil {
			beforeDial()
		}
		return u.dialNew()
	}
}

// dialNew dials a fresh connection; the caller has counted it in open.
func (u *Pool) dialNew() (*Conn, error) {
	nc, err := u.b.Dial()
	if err != nil {
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
		return nil, err
	}
	_, isTLS := nc.(*tls.Conn)
	c := &Conn{NC: nc, FD: sock.FD(sock.Raw(nc)), tls: isTLS}
	if !isTLS {
		c.lean.Init(nc)
	}
	return c, nil
}

// usable tells whether an idle connection can carry a request.
func (c *Conn) usable() bool {
	if c.tls {
		hung, ok := sock.HungUp(c.FD)
		return !ok || !hung
	}
	return sock.IdleUsable(c.FD)
}

// put returns c after an exchange that ended cleanly on a message boundary.
func (u *Pool) Put(c *Conn) {
	c.idleAt, c.Reused = time.Now(), true
	u.mu.Lock()
	if u.closed || len(u.idle) >= maxIdle {
		u.mu.Unlock()
		u.Discard(c)
		return
	}
	u.idle = append(u.idle, c)
	u.mu.Unlock()
}

// discard closes c, which is not going back to the pool.
func (u *Pool) Discard(c *Conn) {
	_ = c.NC.Close()
	u.mu.Lock()
	u.open--
	u.mu.Unlock()
}

// Stats implements route.Pool.
func (u *Pool) Stats() route.PoolStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return route.PoolStats{Open: u.open, Idle: len(u.idle)}
}

// CloseIdle implements route.Pool: it closes idle connections older than
// maxIdle (all when 0); with stop, the pool keeps none from now on.
func (u *Pool) CloseIdle(maxIdle time.Duration, stop bool) {
	now := time.Now()
	u.mu.Lock()
	u.closed = u.closed || stop
	keep := u.idle[:0]
	var drop []*Conn
	for _, c := range u.idle {
		if maxIdle == 0 || now.Sub(c.idleAt) > maxIdle {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(u.idle[len(keep):])
	u.idle = keep
	u.mu.Unlock()
	for _, c := range drop {
		u.Discard(c)
	}
}
