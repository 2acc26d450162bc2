package route

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// A TLS shard's identity, as its last handshake showed it.
const (
	identityUnknown  int32 = iota // no handshake yet
	identityVerified              // the certificate is valid for the shard's name
	identityMismatch              // valid, but for another name: another pod is at the address
)

// recheckIdentity is how long a mismatch stands before a held request
// looks again (the right pod may come back at that address).
const recheckIdentity = time.Second

// identity is what a backend knows of its shard's identity.
type identity struct {
	state   atomic.Int32
	checked atomic.Int64 // unix nanoseconds of the last handshake
	probe   sync.Mutex   // one probe at a time
}

// handshake runs TLS on nc, a connection to b's address, and records what
// it showed of the shard's identity. Nothing is written on a connection
// whose shard did not prove it is b.TLSName.
func (b *Backend) handshake(nc net.Conn) (net.Conn, error) {
	if b.shardTLS == nil {
		_ = nc.Close()
		return nil, answer.TLSFailure(false, certs.ReasonHandshake, errors.New("no shard TLS configured"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	tc, err := b.shardTLS.Handshake(ctx, nc, b.TLSName, b.Protocol == watch.H2C)
	b.identity.checked.Store(time.Now().UnixNano())
	var se *certs.ShardError
	if errors.As(err, &se) {
		b.Metrics.tlsError(se.Reason)
		if se.Identity() {
			b.identity.state.Store(identityMismatch)
		}
		return nil, answer.TLSFailure(se.Identity(), se.Reason, err)
	}
	b.identity.state.Store(identityVerified)
	return tc, nil
}

// holdForIdentity holds a dial that found another shard at b's address:
// it looks again every recheckIdentity until the right shard answers
// there, b leaves the topology (its address moved: the request's owner is
// elsewhere now, and it is answered with err), or --owner-wait passes.
func (b *Backend) holdForIdentity(err error) (net.Conn, error) {
	deadline := time.Now().Add(b.ownerWait)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		wait := min(recheckIdentity, time.Until(deadline))
		if wait <= 0 || b.isStopped() {
			return nil, err
		}
		t.Reset(wait)
		<-t.C
		nc, again := b.dialOnce()
		if again == nil || !b.Mismatched() {
			return nc, again
		}
	}
}

func (b *Backend) isStopped() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopped
}

// Mismatched tells whether the last handshake with the shard's address
// found another shard there.
func (b *Backend) Mismatched() bool { return b.identity.state.Load() == identityMismatch }

// TLSState is what /shards shows of the backend: "off", "verified" or
// "unverified" (certificates are not checked), and whether the last
// handshake found another shard at the address.
func (b *Backend) TLSState() (state string, mismatch bool) {
	switch {
	case !b.TLS:
		return "off", false
	case b.shardTLS == nil || !b.shardTLS.Verified():
		return "unverified", b.Mismatched()
	}
	return "verified", b.Mismatched()
}

// needsProbe tells whether a request for b should wait (on a goroutine
// that may block) for b's identity to be checked first.
func (b *Backend) needsProbe() bool {
	if !b.TLS || b.shardTLS == nil {
		return false
	}
	switch b.identity.state.Load() {
	case identityUnknown:
		return true
	case identityMismatch:
		return true
	}
	return false
}

// usable checks, blocking, that b's address holds the shard b names: a
// handshake (no HTTP) when its identity is unknown, or a mismatch is over
// recheckIdentity old. It reports false while another shard is there.
func (b *Backend) usable() bool {
	if !b.TLS || b.shardTLS == nil {
		return true
	}
	b.identity.probe.Lock()
	defer b.identity.probe.Unlock()
	st := b.identity.state.Load()
	stale := time.Since(time.Unix(0, b.identity.checked.Load())) >= recheckIdentity
	if st == identityVerified || st == identityMismatch && !stale {
		return st == identityVerified
	}
	nc, err := b.dialOnce()
	if err == nil {
		// The session is cached: the pool's own connection resumes it.
		_ = nc.(*tls.Conn).Close()
	}
	return !b.Mismatched()
}
