package certs

import (
	"crypto/tls"
	"sync/atomic"
)

// ALPN protocols a data listener offers, most preferred first: a client
// that offers both gets HTTP/2.
var ALPN = []string{"h2", "http/1.1"}

// ServerConfig returns a server tls.Config that presents kp's certificate
// in force at each handshake, speaks TLS 1.2 and 1.3, and offers the
// protocols in alpn (nil: none). With clientCA (may be nil) it requires
// client certificates under the bundle in force (mTLS); with optional, it
// verifies those given and lets clients without one through (the caller
// decides what they may do).
func ServerConfig(kp *KeyPair, clientCA *Pool, optional bool, alpn []string) *tls.Config {
	return ServerConfigCounting(kp, clientCA, optional, alpn, nil)
}

// ServerConfigCounting is ServerConfig that calls ok (when not nil) at
// the end of each handshake that succeeded, for servers (net/http) whose
// handshakes the caller does not run itself.
func ServerConfigCounting(kp *KeyPair, clientCA *Pool, optional bool, alpn []string, ok func()) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: alpn, GetCertificate: kp.GetCertificate}
	if ok != nil {
		base.VerifyConnection = func(tls.ConnectionState) error {
			ok()
			return nil
		}
	}
	if clientCA == nil {
		return base
	}
	base.ClientAuth = tls.RequireAndVerifyClientCert
	if optional {
		base.ClientAuth = tls.VerifyClientCertIfGiven
	}
	base.ClientCAs = clientCA.CertPool()
	c := &clientCAConfig{base: base, ca: clientCA}
	c.cur.Store(base)
	out := base.Clone()
	out.GetConfigForClient = c.forClient
	return out
}

// clientCAConfig rebuilds the server config when the client CA bundle
// changes, and hands out the same one until then.
type clientCAConfig struct {
	base *tls.Config
	ca   *Pool
	cur  atomic.Pointer[tls.Config]
}

func (c *clientCAConfig) forClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	cfg := c.cur.Load()
	if pool := c.ca.CertPool(); cfg.ClientCAs != pool { // a reload stores a new pool
		cfg = c.base.Clone()
		cfg.ClientCAs = pool
		c.cur.Store(cfg)
	}
	return cfg, nil
}
