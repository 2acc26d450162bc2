package proxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// The HTTP/2 front end. A client connection whose first bytes are the
// HTTP/2 preface (h2c with prior knowledge) is handed to Go's own HTTP/2
// server; each stream is then routed on its own by the key rules, so one
// connection reaches many shards.

// h2Preface starts every HTTP/2 connection (RFC 9113 §3.4). Its first line
// parses as an HTTP/1 head with version HTTP/2.0, which the engine then
// recognizes.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// h2Front serves the connections handed over from the HTTP/1.1 engine.
type h2Front struct {
	once sync.Once
	srv  *http.Server
	ln   *handoffListener
}

// h2 creates the HTTP/2 server on first use.
func (p *Proxy) h2() *h2Front {
	f := &p.h2front
	f.once.Do(func() {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		f.ln = newHandoffListener()
		f.srv = &http.Server{
			Handler:           http.HandlerFunc(p.serveStream),
			Protocols:         &protos,
			ReadHeaderTimeout: p.cfg.ClientHeaderTimeout,
			IdleTimeout:       p.cfg.IdleTimeout,
		}
		go func() { _ = f.srv.Serve(f.ln) }()
	})
	return f
}

// shutdown stops the HTTP/2 server gracefully (GOAWAY, streams finish).
func (f *h2Front) shutdown(ctx context.Context) error {
	f.once.Do(func() {}) // none is started from now on
	if f.srv == nil {
		return nil
	}
	return f.srv.Shutdown(ctx)
}

// isH2Preface tells whether rb starts with the preface; with fewer bytes
// than the preface, whether they could be its start.
func isH2Preface(b []byte) bool {
	n := min(len(b), len(h2Preface))
	return n >= len("PRI * HTTP/2.0") && bytes.Equal(b[:n], h2Preface[:n])
}

// handOffH2 gives the connection, with the bytes already read, to the
// HTTP/2 server. The engine forgets it.
func (cc *clientConn) handOffH2() {
	pending := append([]byte(nil), cc.rb[cc.r:cc.w]...)
	cc.r = cc.w
	_ = cc.nc.SetDeadline(time.Time{})
	if cc.p.relayable() {
		go cc.p.relayH2(cc.nc, cc.ip, pending)
		return
	}
	f := cc.p.h2()
	if f.ln == nil { // shutting down
		_ = cc.nc.Close()
		return
	}
	f.ln.deliver(&prefixConn{Conn: cc.nc, pending: pending})
}

// prefixConn replays bytes already read before reading the socket.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
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
