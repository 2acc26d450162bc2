package admin

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/admin/h1client"
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

// shardDialer dials shards for broadcasts.
var shardDialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// dial opens a connection for broadcasts to t: TCP, or for a TLS shard
// one dialed with the data plane's TLS settings, whose handshake checks
// that the shard is the one it should be (an address that now belongs to
// another pod gets no request).
func (b *broadcaster) dial(ctx context.Context, t h1client.Target) (net.Conn, error) {
	if t.TLS && b.shardTLS == nil {
		return nil, answer.TLSFailure(false, certs.ReasonHandshake, errors.New("no shard TLS configured"))
	}
	nc, err := shardDialer.DialContext(ctx, "tcp", t.Addr)
	if err != nil || !t.TLS {
		return nc, err
	}
	tc, err := b.shardTLS.Handshake(ctx, nc, t.TLSName, false)
	if err != nil {
		if se := (*certs.ShardError)(nil); errors.As(err, &se) {
			return nil, answer.TLSFailure(se.Identity(), se.Reason, err)
		}
		return nil, err
	}
	return tc, nil
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
