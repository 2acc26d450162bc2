package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
)

// ShardClient is how the proxy speaks TLS to shards: each shard's
// certificate verified under a CA bundle for the shard's own name (its
// identity), that name sent as SNI, a client certificate when the shards
// ask for one (mTLS), and sessions resumed across the pooled connections
// to a shard. Safe for concurrent use; the material reloads underneath.
type ShardClient struct {
	// CA is the bundle shard certificates must chain to. Nil only with
	// Insecure.
	CA *Pool
	// Cert is presented to shards that ask for a client certificate; nil
	// presents none.
	Cert *KeyPair
	// Insecure skips verification (testing only): any certificate is
	// taken for any name.
	Insecure bool

	sessions tls.ClientSessionCache
}

// NewShardClient returns a ShardClient; see its fields.
func NewShardClient(ca *Pool, cert *KeyPair, insecure bool) *ShardClient {
	return &ShardClient{CA: ca, Cert: cert, Insecure: insecure, sessions: tls.NewLRUClientSessionCache(4096)}
}

// Verified tells whether shards' certificates are verified.
func (s *ShardClient) Verified() bool { return !s.Insecure }

// Config returns the client config for a shard whose certificate must be
// valid for name, speaking h2 (HTTP/2) or http/1.1 by ALPN.
func (s *ShardClient) Config(name string, h2 bool) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12, ServerName: name, ClientSessionCache: s.sessions,
		NextProtos: []string{"http/1.1"}, InsecureSkipVerify: s.Insecure,
	}
	if h2 {
		c.NextProtos = []string{"h2"}
	}
	if s.CA != nil {
		c.RootCAs = s.CA.CertPool()
	}
	if s.Cert != nil {
		c.GetClientCertificate = s.Cert.GetClientCertificate
	}
	return c
}

// Handshake runs the TLS handshake on nc, a connection to a shard whose
// certificate must be valid for name, until ctx ends. On failure nc is
// closed and the error is a *ShardError saying why.
func (s *ShardClient) Handshake(ctx context.Context, nc net.Conn, name string, h2 bool) (*tls.Conn, error) {
	tc := tls.Client(nc, s.Config(name, h2))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, &ShardError{Reason: Reason(err), Name: name, Err: err}
	}
	if h2 && tc.ConnectionState().NegotiatedProtocol != "h2" {
		_ = tc.Close()
		return nil, &ShardError{Reason: ReasonHandshake, Name: name, Err: errors.New("the shard did not agree to h2 by ALPN")}
	}
	return tc, nil
}

// Reasons a TLS handshake with a shard fails (the reason label of
// shard_tls_errors_total).
const (
	ReasonIdentity         = "identity"          // valid, but for another name: another pod's
	ReasonUnknownAuthority = "unknown_authority" // not under the CA bundle
	ReasonExpired          = "expired"           // expired or not yet valid
	ReasonHandshake        = "handshake"         // any other failure
)

// Reason classifies a shard handshake error.
func Reason(err error) string {
	var host x509.HostnameError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &host):
		return ReasonIdentity
	case errors.As(err, &unknown):
		return ReasonUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	}
	return ReasonHandshake
}

// ShardError is a failed handshake with a shard.
type ShardError struct {
	Reason string // one of the Reason* values
	Name   string // the name the certificate was verified for
	Err    error
}

func (e *ShardError) Error() string {
	return "TLS with the shard (verified for " + e.Name + "): " + e.Reason + ": " + e.Err.Error()
}

func (e *ShardError) Unwrap() error { return e.Err }

// Identity tells whether the shard at that address is another one: its
// certificate is valid, but not for the shard's name. A request for it is
// held like one for a not-ready owner.
func (e *ShardError) Identity() bool { return e.Reason == ReasonIdentity }
