// Package h2std is the net/http HTTP/2 path: HTTP/2 clients whose streams
// may need what the relay (package http2) does not do yet (a body rule, an
// HTTP/1.1 shard) are served by Go's own HTTP/2 server, each stream routed
// by package route and forwarded through the shard's net/http transport.
// It is to be retired once the relay serves every HTTP/2 connection; until
// then it refuses what Go's server lets through but a shard could read two
// ways.
package h2std

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// Config configures a Server. Every field is required: the facade
// (package proxy) fills in the documented defaults.
type Config struct {
	// Router takes each stream's routing step.
	Router *route.Router
	// MaxBodyBytes caps what a body rule buffers of a request body.
	MaxBodyBytes int
	// UpstreamTimeout bounds the wait for an answer's head.
	UpstreamTimeout time.Duration
	// ClientHeaderTimeout bounds receiving a request head.
	ClientHeaderTimeout time.Duration
	// ClientBodyTimeout bounds the wait between two reads of a body a body
	// rule buffers.
	ClientBodyTimeout time.Duration
	// IdleTimeout closes a connection without streams this long.
	IdleTimeout time.Duration
	// MaxRequestBodyBytes caps a declared request body (0: no limit).
	MaxRequestBodyBytes int64
}

// maxHeaderBytes bounds a request's header list and an answer's head, as
// the relay bounds them (64 KiB).
const maxHeaderBytes = 64 << 10

// Server serves the HTTP/2 connections handed to it with Go's HTTP/2
// server, started on first use. Safe for concurrent use.
type Server struct {
	cfg    Config
	router *route.Router
	once   sync.Once
	srv    *http.Server
	ln     *handoffListener
}

// New returns a Server for cfg.
func New(cfg Config) *Server { return &Server{cfg: cfg, router: cfg.Router} }

// start creates the HTTP/2 server on first use.
func (f *Server) start() {
	f.once.Do(func() {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		f.ln = newHandoffListener()
		f.srv = &http.Server{
			Handler:           http.HandlerFunc(f.serveStream),
			Protocols:         &protos,
			ReadHeaderTimeout: f.cfg.ClientHeaderTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			IdleTimeout:       f.cfg.IdleTimeout,
		}
		go func() { _ = f.srv.Serve(f.ln) }()
	})
}

// Shutdown stops the HTTP/2 server gracefully (GOAWAY, streams finish).
func (f *Server) Shutdown(ctx context.Context) error {
	f.once.Do(func() {}) // none is started from now on
	if f.srv == nil {
		return nil
	}
	return f.srv.Shutdown(ctx)
}

// ServeConn gives the server a connection that sent the HTTP/2 preface,
// with the bytes read from it so far.
func (f *Server) ServeConn(nc net.Conn, pending []byte) {
	f.start()
	if f.ln == nil { // shutting down
		_ = nc.Close()
		return
	}
	f.ln.deliver(sock.Prefixed(nc, pending))
}

// handoffListener is a net.Listener fed by the engine rather than by a
// socket: its Accept returns connections that turned out to speak HTTP/2.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
