package http1

import (
	"net"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// upstreamMaxIdle bounds the idle connections kept per shard address.
const upstreamMaxIdle = 256

// upConn is one connection to a shard. Between exchanges it sits in its
// shard's pool, holding no buffer.
type upConn struct {
	nc     net.Conn
	fd     int // nc's socket, for peek
	idleAt time.Time
	// reused tells whether the connection served an exchange before, so
	// that a failure before any answer byte may be retried on a fresh one.
	reused bool
}

// shardPool is the engine's pool of connections to one shard at one
// address (one route.Backend). Safe for concurrent use.
type shardPool struct {
	b *route.Backend

	mu     sync.Mutex
	idle   []*upConn // LIFO: the warmest connection is reused first
	open   int       // idle and in use
	closed bool
}

var _ route.Pool = (*shardPool)(nil)

// poolOf returns the engine's pool for b, made on first use.
func poolOf(b *route.Backend) *shardPool {
	return b.Pool(route.PoolHTTP1, func(b *route.Backend) route.Pool { return &shardPool{b: b} }).(*shardPool)
}

// get returns a pooled connection, or dials a new one when none is idle.
// It fails with answer.ErrShardBusy at MaxConns, answer.ErrShardDown when the dial fails.
func (u *shardPool) get() (*upConn, error) {
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
			if !idleConnUsable(c.fd) {
				u.discard(c)
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
		return u.dialNew()
	}
}

// dialNew dials a fresh connection; the caller has counted it in open.
func (u *shardPool) dialNew() (*upConn, error) {
	nc, err := u.b.Dial()
	if err != nil {
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
		return nil, err
	}
	return &upConn{nc: nc, fd: sockFD(nc)}, nil
}

// put returns c after an exchange that ended cleanly on a message boundary.
func (u *shardPool) put(c *upConn) {
	c.idleAt, c.reused = time.Now(), true
	u.mu.Lock()
	if u.closed || len(u.idle) >= upstreamMaxIdle {
		u.mu.Unlock()
		u.discard(c)
		return
	}
	u.idle = append(u.idle, c)
	u.mu.Unlock()
}

// discard closes c, which is not going back to the pool.
func (u *shardPool) discard(c *upConn) {
	_ = c.nc.Close()
	u.mu.Lock()
	u.open--
	u.mu.Unlock()
}

// Stats implements route.Pool.
func (u *shardPool) Stats() route.PoolStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return route.PoolStats{Open: u.open, Idle: len(u.idle)}
}

// CloseIdle implements route.Pool: it closes idle connections older than
// maxIdle (all when 0); with stop, the pool keeps none from now on.
func (u *shardPool) CloseIdle(maxIdle time.Duration, stop bool) {
	now := time.Now()
	u.mu.Lock()
	u.closed = u.closed || stop
	keep := u.idle[:0]
	var drop []*upConn
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
		u.discard(c)
	}
}
