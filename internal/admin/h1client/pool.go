package h1client

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// conn is one connection to a target. Between exchanges it sits in its
// target's pool.
type conn struct {
	nc     net.Conn
	fd     int  // nc's socket (under TLS, the socket under it), for the idle check; -1 if none
	tls    bool // a TLS shard may send records nobody asked for: only a hang-up makes it unusable
	reused bool // it carried an exchange before
	idleAt time.Time
	lean   sock.Lean // waits for the answer right after the write (not under TLS)
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc, fd: sock.FD(sock.Raw(nc))}
	if c.tls = sock.Raw(nc) != nc; !c.tls {
		c.lean.Init(nc)
	}
	return c
}

// usable tells whether an idle connection can carry a request: the shard
// has not closed it, nor (plain) sent bytes nobody asked for. One
// non-blocking look at the socket, cheaper than a request sent on a dead
// connection and sent again.
func (c *conn) usable() bool {
	if c.tls {
		hung, ok := sock.HungUp(c.fd)
		return !ok || !hung
	}
	return sock.IdleUsable(c.fd)
}

// pool is the connections to one target: at most MaxConns open, in use
// and idle together; an exchange that finds none idle and the bound
// reached waits for one. Safe for concurrent use.
type pool struct {
	c *Client
	t Target

	mu      sync.Mutex
	idle    []*conn // LIFO: the warmest connection is reused first
	open    int     // idle, in use, or being dialed
	waiters []chan *conn
	sweep   *time.Timer // closes connections idle too long; nil when none is idle
	gone    bool        // no longer in the client's map: look the target up again
}

// get returns an idle connection, or nil and a slot to dial a new one
// in; when the bound is reached it waits for either until deadline or
// the group's end. errGone asks the caller to look the pool up again.
func (p *pool) get(g *Group, deadline time.Time) (*conn, error) {
	for {
		p.mu.Lock()
		if p.gone {
			p.mu.Unlock()
			return nil, errGone
		}
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			if time.Since(c.idleAt) < p.c.cfg.IdleTimeout && c.usable() {
				return c, nil
			}
			p.discard(c)
			continue
		}
		if p.open < p.c.cfg.MaxConns {
			p.open++
			p.mu.Unlock()
			return nil, nil
		}
		ch := make(chan *conn, 1)
		p.waiters = append(p.waiters, ch)
		p.mu.Unlock()
		return p.wait(ch, g, deadline)
	}
}

// wait waits for a connection (or a slot, as nil) handed to ch.
func (p *pool) wait(ch chan *conn, g *Group, deadline time.Time) (*conn, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var err error
	select {
	case c := <-ch:
		return c, nil
	case <-t.C:
		err = errDeadline
	case <-g.done():
		err = g.ctx.Err()
	}
	p.mu.Lock()
	for i, w := range p.waiters {
		if w == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, err
		}
	}
	p.mu.Unlock()
	// Handed something as we gave up: pass it on.
	if c := <-ch; c != nil {
		p.put(c)
	} else {
		p.release()
	}
	return nil, err
}

// put takes back c after an exchange that ended cleanly on a message
// boundary: to the first waiter, else to the idle list.
func (p *pool) put(c *conn) {
	c.idleAt, c.reused = time.Now(), true
	p.mu.Lock()
	if w := p.nextWaiter(); w != nil {
		p.mu.Unlock()
		w <- c
		return
	}
	if p.gone || p.c.closed.Load() {
		p.mu.Unlock()
		p.discard(c)
		return
	}
	p.idle = append(p.idle, c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.c.cfg.IdleTimeout, p.sweepIdle)
	}
	p.mu.Unlock()
}

// discard closes c, which is not going back to the pool, and frees its slot.
func (p *pool) discard(c *conn) {
	_ = c.nc.Close()
	p.release()
}

// release frees a slot: to the first waiter, who dials in it, else for
// the next exchange.
func (p *pool) release() {
	p.mu.Lock()
	if w := p.nextWaiter(); w != nil {
		p.mu.Unlock()
		w <- nil
		return
	}
	p.open--
	p.mu.Unlock()
}

// sweepIdle closes the connections idle longer than IdleTimeout and runs
// again when the next would be; a pool left with no connection leaves the
// client's map.
func (p *pool) sweepIdle() {
	now := time.Now()
	var drop []*conn
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle { // oldest first
		if now.Sub(c.idleAt) >= p.c.cfg.IdleTimeout {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(keep) == 0 {
		p.sweep = nil
	} else if d := keep[0].idleAt.Add(p.c.cfg.IdleTimeout).Sub(now); p.sweep == nil {
		p.sweep = time.AfterFunc(d, p.sweepIdle) // stopped by closeIdle as this run began
	} else {
		p.sweep.Reset(d)
	}
	p.mu.Unlock()
	for _, c := range drop {
		p.discard(c)
	}
	p.c.dropIfEmpty(p)
}

// closeIdle closes every idle connection.
func (p *pool) closeIdle() {
	p.mu.Lock()
	drop := p.idle
	p.idle = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, c := range drop {
		p.discard(c)
	}
}

// dial opens a connection to p's target in a slot get gave.
func (p *pool) dial(g *Group, deadline time.Time) (*conn, error) {
	ctx, cancel := context.WithDeadline(g.ctx, deadline)
	defer cancel()
	nc, err := p.c.cfg.Dial(ctx, p.t)
	if err != nil {
		p.release()
		return nil, err
	}
	return newConn(nc), nil
}

// nextWaiter takes the first exchange waiting for a connection off the
// queue, or returns nil when none waits; p.mu held.
func (p *pool) nextWaiter() chan *conn {
	if len(p.waiters) == 0 {
		return nil
	}
	w := p.waiters[0]
	p.waiters = p.waiters[1:]
	return w
}
