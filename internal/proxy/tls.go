package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// recordHandshake is the first byte of every TLS connection: a handshake
// record (RFC 8446 §5.1). An HTTP/1.x request starts with a method's
// letter, the HTTP/2 preface with 'P'.
const recordHandshake = 0x16

// plaintextAnswer is what a plaintext request on the TLS port gets,
// in plaintext, before the connection closes.
const plaintextAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n" +
	"Content-Length: 56\r\nConnection: close\r\n\r\n" +
	`{"error":"plaintext request on the TLS port, use https"}`

// ServeTLS is Serve for a TLS listener: each connection's handshake (with
// conf; its NextProtos decide what a client may speak) runs on the
// connection's goroutine within ClientHeaderTimeout; a connection that
// chose "h2" by ALPN goes to the HTTP/2 relay, any other to the HTTP/1.1
// engine, both served as on a cleartext listener but with
// X-Forwarded-Proto "https". A connection whose first byte is not a TLS
// record gets a plaintext 400 and is closed.
func (p *Proxy) ServeTLS(ln net.Listener, conf *tls.Config) error {
	return p.serve(ln, func(nc net.Conn) bool {
		go p.handshake(nc, conf)
		return true
	})
}

// handshake runs the TLS handshake of a new connection and hands it to a
// front end.
func (p *Proxy) handshake(nc net.Conn, conf *tls.Config) {
	deadline := time.Now().Add(p.cfg.ClientHeaderTimeout)
	_ = nc.SetDeadline(deadline)
	var first [1]byte
	if _, err := io.ReadFull(nc, first[:]); err != nil {
		p.handshakeDone(certs.OutcomeFailed, err)
		_ = nc.Close()
		return
	}
	if first[0] != recordHandshake {
		p.handshakeDone(certs.OutcomePlaintext, nil)
		answerPlaintext(nc, deadline)
		return
	}
	tc := tls.Server(sock.Prefixed(nc, first[:]), conf)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		outcome := certs.OutcomeFailed
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			outcome = certs.OutcomeTimeout
		}
		p.handshakeDone(outcome, err)
		_ = nc.Close()
		return
	}
	p.handshakeDone(certs.OutcomeOK, nil)
	_ = nc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		p.relay.ServeConn(tc, header.ClientIP(nc.RemoteAddr().String()), nil)
		return
	}
	if !p.http1.ServeConn(tc) {
		_ = tc.Close()
	}
}

func (p *Proxy) handshakeDone(outcome string, err error) {
	if p.cfg.OnTLSHandshake != nil {
		p.cfg.OnTLSHandshake(outcome)
	}
	if err != nil {
		p.cfg.Logger.Debug("TLS handshake failed", "outcome", outcome, "err", err)
	}
}

// answerPlaintext writes the plaintext 400 and closes nc once the client
// has seen it: the rest of its request is read and dropped until it
// closes (or the deadline), so that closing does not reset the
// connection before the answer is read.
func answerPlaintext(nc net.Conn, deadline time.Time) {
	defer nc.Close()
	if _, err := io.WriteString(nc, plaintextAnswer); err != nil {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(deadline)
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
}
