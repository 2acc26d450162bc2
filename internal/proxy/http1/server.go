// Package http1 is the HTTP/1.1 engine: client connections served request
// after request, each request routed by package route and forwarded on a
// pooled shard connection, its head written as received (package h1 parses
// it) under the header policy, bodies streamed through fixed, pooled
// buffers both ways, 1xx answers, trailers and upgrades (WebSocket tunnels)
// relayed, and idle connections parked without a goroutine. Requests for an
// h2c shard go through a bridge onto HTTP/2.
package http1

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// Config configures a Server. Every field is required: the facade
// (package proxy) fills in the documented defaults.
type Config struct {
	// Router takes each request's routing step.
	Router *route.Router
	// MaxBodyBytes caps what a body rule buffers of a request body.
	MaxBodyBytes int
	// MaxRequestBodyBytes caps every request body (0: no limit).
	MaxRequestBodyBytes int64
	// UpstreamTimeout bounds waiting for a shard: for the answer's head
	// after the request was sent, and between two reads of its body.
	UpstreamTimeout time.Duration
	// ClientHeaderTimeout bounds receiving a request head from its first
	// byte (408 after).
	ClientHeaderTimeout time.Duration
	// ClientBodyTimeout bounds the wait between two reads of a request body.
	ClientBodyTimeout time.Duration
	// ClientWriteTimeout bounds a write to a client that does not read.
	ClientWriteTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection idle this long.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes an upgraded connection when no byte crossed
	// it either way for this long.
	TunnelIdleTimeout time.Duration
	// UpgradeProtocols are the protocols an Upgrade request may switch to
	// (case-insensitive names, e.g. "websocket"); for any other the
	// Upgrade field is not forwarded.
	UpgradeProtocols []string
	// HandOff is offered the first bytes of a connection whose first
	// request line names another version (an HTTP/2 preface): when it
	// takes the connection (true), the engine forgets it. Nil takes none.
	HandOff func(nc net.Conn, ip string, pending []byte) bool
	// Logger logs at debug level what clients and shards get wrong.
	Logger *slog.Logger
}

// Server is the engine: it tracks its client connections so that Shutdown
// can wake idle ones and wait for busy ones. Safe for concurrent use.
type Server struct {
	cfg    Config
	router *route.Router
	log    *slog.Logger
	parker parker

	mu sync.Mutex
	// conns lists the connections served (linked through prev and next:
	// a map's slot and growth weighed five times the two pointers), open
	// counts them.
	conns    *clientConn
	open     int
	draining atomic.Bool
	// forced: the shutdown timeout passed; exchanges still waiting on a
	// shard give up at their next look (every clientCheckInterval).
	forced atomic.Bool
	// shedding counts requests waiting for their shard without buffers.
	shedding atomic.Int64
	wg       sync.WaitGroup
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	return &Server{cfg: cfg, router: cfg.Router, log: cfg.Logger}
}

// ServeConn serves nc on a goroutine of its own until it closes. It
// reports false, and leaves nc to the caller, once Shutdown has begun.
func (s *Server) ServeConn(nc net.Conn) bool {
	cc := s.newClientConn(nc)
	if !s.track(cc) {
		return false
	}
	go cc.serve()
	return true
}

func (s *Server) track(cc *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	cc.next = s.conns
	if s.conns != nil {
		s.conns.prev = cc
	}
	s.conns = cc
	s.open++
	s.wg.Add(1)
	return true
}

func (s *Server) forget(cc *clientConn) {
	s.mu.Lock()
	if cc.prev == nil && s.conns != cc {
		s.mu.Unlock()
		return // forgotten already
	}
	if cc.prev != nil {
		cc.prev.next = cc.next
	} else {
		s.conns = cc.next
	}
	if cc.next != nil {
		cc.next.prev = cc.prev
	}
	cc.prev, cc.next = nil, nil
	s.open--
	s.mu.Unlock()
	s.wg.Done()
}

// Open is how many client connections the engine serves now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// WaitingLean is how many requests wait for their shard's answer now
// without holding buffers (after clientCheckInterval without a byte).
func (s *Server) WaitingLean() int64 { return s.shedding.Load() }

// Shutdown drains the engine: every connection's next answer carries
// "Connection: close", idle connections are closed once nothing is waiting
// on them (a request already sent is still served), and Shutdown waits for
// the rest until ctx ends, then closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	// Idle connections wait in a read with a deadline; moving it to now
	// wakes them to look at draining. A connection that goes idle after
	// this loop sees draining itself.
	for cc := s.conns; cc != nil; cc = cc.next {
		if cc.state.Load() == connIdle {
			_ = cc.nc.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()
	s.parker.drain()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.forced.Store(true)
	s.mu.Lock()
	for cc := s.conns; cc != nil; cc = cc.next {
		_ = cc.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
