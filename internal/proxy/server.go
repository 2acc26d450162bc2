package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// server tracks the data plane's listeners and client connections so that
// Shutdown can stop accepting, wake idle connections and wait for busy ones.
type server struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	draining  atomic.Bool
	// forced: the shutdown timeout passed; exchanges still waiting on a
	// shard give up at their next look (every clientCheckInterval).
	forced atomic.Bool
	wg     sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts client connections on ln and serves each on its own
// goroutine until Shutdown. It always returns a non-nil error; after
// Shutdown, ErrServerClosed.
func (p *Proxy) Serve(ln net.Listener) error {
	s := &p.srv
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*clientConn]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.draining.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors or a transient failure: back off
				// rather than spin, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cc := p.newClientConn(nc)
		if !s.track(cc) {
			_ = nc.Close()
			return ErrServerClosed
		}
		go cc.serve()
	}
}

func (s *server) track(cc *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *server) forget(cc *clientConn) {
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops the data plane gracefully: listeners close, every
// connection's next answer carries "Connection: close", idle connections
// are closed once nothing is waiting on them (a request already sent is
// still served), and Shutdown waits for the rest until ctx ends, then
// closes what remains.
func (p *Proxy) Shutdown(ctx context.Context) error {
	s := &p.srv
	s.mu.Lock()
	s.draining.Store(true)
	for ln := range s.listeners {
		_ = ln.Close()
	}
	// Idle connections wait in a read with a deadline; moving it to now
	// wakes them to look at draining. A connection that goes idle after
	// this loop sees draining itself.
	for cc := range s.conns {
		if cc.state.Load() == connIdle {
			_ = cc.nc.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()
	p.parker.drain()
	h2done := make(chan error, 1)
	go func() {
		relayed := make(chan bool, 1)
		go func() { relayed <- p.h2conns.shutdown(ctx.Done()) }()
		err := p.h2front.shutdown(ctx)
		if !<-relayed && err == nil {
			err = ctx.Err()
		}
		h2done <- err
	}()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return <-h2done
	case <-ctx.Done():
	}
	s.forced.Store(true)
	s.mu.Lock()
	for cc := range s.conns {
		_ = cc.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
