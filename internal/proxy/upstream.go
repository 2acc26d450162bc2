package proxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Pool limits of one upstream.
const (
	// upstreamMaxIdle bounds the idle connections kept per shard address.
	upstreamMaxIdle = 256
	// upstreamIdleTimeout closes a pooled connection unused for this long;
	// shards commonly close theirs after 60–120 s.
	upstreamIdleTimeout = 50 * time.Second
)

// upConn is one connection to a shard. Between exchanges it sits in its
// upstream's pool, holding no buffer.
type upConn struct {
	nc     net.Conn
	fd     int // nc's socket, for peek
	idleAt time.Time
	// reused tells whether the connection served an exchange before, so
	// that a failure before any answer byte may be retried on a fresh one.
	reused bool
}

// upstream is the pool of connections to one shard at one address. Safe
// for concurrent use.
type upstream struct {
	name, addr string
	metrics    *shardMetrics
	dial       func(addr string) (net.Conn, error)
	maxConns   int

	mu     sync.Mutex
	idle   []*upConn // LIFO: the warmest connection is reused first
	open   int       // idle and in use
	closed bool
}

// get returns a pooled connection, or dials a new one when none is idle.
// It fails with ErrShardBusy at maxConns, ErrShardDown when the dial fails.
func (u *upstream) get() (*upConn, error) {
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
		if u.open >= u.maxConns {
			u.mu.Unlock()
			return nil, ErrShardBusy
		}
		u.open++
		u.mu.Unlock()
		return u.dialNew()
	}
}

// dialNew dials a fresh connection; the caller has counted it in open.
func (u *upstream) dialNew() (*upConn, error) {
	nc, err := u.dial(u.addr)
	if err != nil {
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
		return nil, errors.Join(ErrShardDown, err)
	}
	return &upConn{nc: nc, fd: sockFD(nc)}, nil
}

// put returns c after an exchange that ended cleanly on a message boundary.
func (u *upstream) put(c *upConn) {
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
func (u *upstream) discard(c *upConn) {
	_ = c.nc.Close()
	u.mu.Lock()
	u.open--
	u.mu.Unlock()
}

// closeIdle closes idle connections older than maxIdle (all when 0). With
// stop, the upstream keeps none from now on: its shard left or moved.
func (u *upstream) closeIdle(maxIdle time.Duration, stop bool) {
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
