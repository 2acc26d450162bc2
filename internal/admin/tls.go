package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// tlsState is what /shards says of a shard's TLS.
func tlsState(sh watch.Shard, c *certs.ShardClient) string {
	switch {
	case !sh.TLS:
		return "off"
	case c != nil && !c.Verified():
		return "unverified"
	}
	return "verified"
}

// shardURL is the scheme and address a broadcast reaches sh at.
func shardURL(sh watch.Shard) string {
	if sh.TLS {
		return "https://" + sh.Addr
	}
	return "http://" + sh.Addr
}

// tlsClients are broadcast's clients for TLS shards, one per shard name
// and address: each dials with the data plane's TLS settings, and its
// handshake checks that the shard is the one it should be (an address
// that now belongs to another pod gets no request).
type tlsClients struct {
	mu sync.Mutex
	m  map[string]*http.Client
}

// clientFor returns the client that reaches sh.
func (b *broadcaster) clientFor(sh watch.Shard) *http.Client {
	if !sh.TLS {
		return b.client
	}
	id := sh.TLSName + "@" + sh.Addr
	b.tls.mu.Lock()
	defer b.tls.mu.Unlock()
	if c := b.tls.m[id]; c != nil {
		return c
	}
	if b.tls.m == nil {
		b.tls.m = map[string]*http.Client{}
	}
	shardTLS, name := b.shardTLS, sh.TLSName
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := newShardTransport()
	tr.DialContext = nil
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if shardTLS == nil {
			return nil, answer.TLSFailure(false, certs.ReasonHandshake, errors.New("no shard TLS configured"))
		}
		nc, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc, err := shardTLS.Handshake(ctx, nc, name, false)
		if err != nil {
			if se := (*certs.ShardError)(nil); errors.As(err, &se) {
				return nil, answer.TLSFailure(se.Identity(), se.Reason, err)
			}
			return nil, err
		}
		return tc, nil
	}
	c := &http.Client{Transport: tr, CheckRedirect: b.client.CheckRedirect}
	b.tls.m[id] = c
	return c
}

func (t *tlsClients) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.m {
		c.CloseIdleConnections()
	}
}

// tlsFailure reports a failed handshake as broadcast shows it: the data
// plane's message (with the reason when it is not a mismatch) and the
// outcome label.
func tlsFailure(err error) (msg, outcome string, ok bool) {
	a := answer.For(err, "")
	switch {
	case errors.Is(err, answer.ErrShardIdentity):
		return a.Body.Error, "identity_mismatch", true
	case errors.Is(err, answer.ErrShardTLS):
		return a.Body.Error + ": " + a.Body.Reason, "tls_error", true
	}
	return "", "", false
}
