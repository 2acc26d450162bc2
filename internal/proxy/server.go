package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// errTooManyFiles is what Accept fails with when the process is out of file
// descriptors; Serve backs off instead of giving up.
var errTooManyFiles error = syscall.EMFILE

// listeners tracks the listeners Serve accepts on, for Shutdown.
type listeners struct {
	mu     sync.Mutex
	m      map[net.Listener]struct{}
	closed bool
}

// frontEnd is what Shutdown asks of each front end: stop taking
// connections, let those it has finish until ctx ends, then close them.
type frontEnd interface {
	Shutdown(ctx context.Context) error
}

// Serve accepts client connections on ln and serves each on its own
// goroutine until Shutdown. It always returns a non-nil error; after
// Shutdown, ErrServerClosed.
func (p *Proxy) Serve(ln net.Listener) error { return p.serve(ln, p.http1.ServeConn) }

// serve accepts on ln and gives each connection to take, which reports
// false once Shutdown has begun.
func (p *Proxy) serve(ln net.Listener, take func(net.Conn) bool) error {
	if !p.srv.add(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if p.srv.isClosed() {
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
		if !take(nc) {
			_ = nc.Close()
			return ErrServerClosed
		}
	}
}

// Shutdown stops the data plane gracefully: listeners close, and every
// front end drains at once (HTTP/1.1: each connection's next answer carries
// "Connection: close" and idle ones close; HTTP/2: GOAWAY, open streams
// finish), until ctx ends; then what remains is closed.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.srv.close()
	fronts := []frontEnd{p.http1, p.relay}
	errs := make([]error, len(fronts))
	var wg sync.WaitGroup
	for i, f := range fronts {
		wg.Go(func() { errs[i] = f.Shutdown(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // ctx's error, the same for every front end
		}
	}
	return nil
}

func (l *listeners) add(ln net.Listener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.m == nil {
		l.m = map[net.Listener]struct{}{}
	}
	l.m[ln] = struct{}{}
	return true
}

func (l *listeners) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *listeners) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ln := range l.m {
		_ = ln.Close()
	}
}

// Listen opens a listener for Serve: on Linux a connection is accepted
// only once its first bytes arrived (see sock.Listen).
func Listen(addr string) (net.Listener, error) { return sock.Listen(addr) }
