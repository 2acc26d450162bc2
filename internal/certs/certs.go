// Package certs holds TLS material read from files and kept current: a
// certificate with its key (KeyPair) and a CA bundle (Pool). Each is
// re-read when its files change on disk (a Kubernetes Secret volume swaps
// a symlink; cert-manager rotates certificates) and the new material is
// used for new handshakes; open connections keep theirs. A new file that
// does not parse, or a key that does not match its certificate, is logged
// and counted, and the material in force stays.
//
// Files: certs.go (the material), watch.go (the reload loop), config.go
// (tls.Configs built on the material), metrics.go.
package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// KeyPair is a certificate and its private key, read from two PEM files.
// Safe for concurrent use.
type KeyPair struct {
	name              string
	certFile, keyFile string
	m                 *Metrics
	log               *slog.Logger

	cur atomic.Pointer[tls.Certificate]

	mu                sync.Mutex // guards the fields below (the reload)
	lastCert, lastKey []byte     // the contents last seen, good or not
	lastErr           error
}

// LoadKeyPair reads certFile and keyFile. name labels the material in
// metrics and logs ("listener", "admin", "shard-client"). The error names
// the file at fault: a missing or unreadable file, a certificate that
// does not parse, a key that does not parse or does not match. m and log
// may be nil.
func LoadKeyPair(name, certFile, keyFile string, m *Metrics, log *slog.Logger) (*KeyPair, error) {
	k := &KeyPair{name: name, certFile: certFile, keyFile: keyFile, m: m, log: orDefault(log)}
	certPEM, keyPEM, err := k.read()
	if err != nil {
		return nil, err
	}
	c, err := parseKeyPair(certFile, keyFile, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	k.install(c, certPEM, keyPEM)
	return k, nil
}

func (k *KeyPair) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(k.certFile); err != nil {
		return nil, nil, err // the PathError names the file
	}
	if keyPEM, err = os.ReadFile(k.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// parseKeyPair parses a certificate chain and its key; the error names the
// file at fault.
func parseKeyPair(certFile, keyFile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if _, err := parseCerts(certPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	return &c, nil
}

// parseCerts parses every CERTIFICATE block of a PEM bundle; at least one
// is required.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing a certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

func (k *KeyPair) install(c *tls.Certificate, certPEM, keyPEM []byte) {
	k.cur.Store(c)
	k.lastCert, k.lastKey, k.lastErr = certPEM, keyPEM, nil
	if c.Leaf != nil {
		k.m.expiry(k.name, c.Leaf.NotAfter)
	}
}

// Certificate returns the certificate in force.
func (k *KeyPair) Certificate() *tls.Certificate { return k.cur.Load() }

// GetCertificate serves tls.Config.GetCertificate: the certificate in force.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// GetClientCertificate serves tls.Config.GetClientCertificate: the
// certificate in force, whatever the server asks for.
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// Reload re-reads the files and, when their contents changed and parse,
// puts the new material in force. It returns the error of a change that
// was refused (logged and counted once per content), else nil.
func (k *KeyPair) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	certPEM, keyPEM, err := k.read()
	if err == nil && bytes.Equal(certPEM, k.lastCert) && bytes.Equal(keyPEM, k.lastKey) {
		return k.lastErr // unchanged: counted when first seen
	}
	var c *tls.Certificate
	if err == nil {
		c, err = parseKeyPair(k.certFile, k.keyFile, certPEM, keyPEM)
	}
	if err != nil {
		if certPEM != nil || keyPEM != nil || k.lastErr == nil || k.lastErr.Error() != err.Error() {
			k.refused(err)
		}
		k.lastCert, k.lastKey, k.lastErr = certPEM, keyPEM, err
		return err
	}
	k.install(c, certPEM, keyPEM)
	k.log.Info("TLS certificate reloaded", "cert", k.name, "file", k.certFile, "not_after", c.Leaf.NotAfter)
	return nil
}

func (k *KeyPair) refused(err error) {
	k.m.reloadError(k.name)
	k.log.Error("TLS certificate not reloaded; the one in force stays", "cert", k.name, "err", err)
}

// Pool is a CA bundle read from a PEM file: the roots a peer's
// certificate must chain to. Safe for concurrent use.
type Pool struct {
	name, file string
	m          *Metrics
	log        *slog.Logger

	cur atomic.Pointer[x509.CertPool]

	mu      sync.Mutex
	last    []byte
	lastErr error
}

// LoadPool reads a CA bundle from file; name labels it in metrics and
// logs. The error names the file.
func LoadPool(name, file string, m *Metrics, log *slog.Logger) (*Pool, error) {
	p := &Pool{name: name, file: file, m: m, log: orDefault(log)}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := p.parse(b)
	if err != nil {
		return nil, err
	}
	p.cur.Store(pool)
	p.last = b
	return p, nil
}

func (p *Pool) parse(b []byte) (*x509.CertPool, error) {
	certs, err := parseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.file, err)
	}
	pool := x509.NewCertPool()
	first := certs[0].NotAfter
	for _, c := range certs {
		pool.AddCert(c)
		if c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	p.m.expiry(p.name, first)
	return pool, nil
}

// CertPool returns the roots in force.
func (p *Pool) CertPool() *x509.CertPool { return p.cur.Load() }

// Reload re-reads the file and puts a changed bundle that parses in
// force; see KeyPair.Reload.
func (p *Pool) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := os.ReadFile(p.file)
	if err == nil && bytes.Equal(b, p.last) {
		return p.lastErr
	}
	var pool *x509.CertPool
	if err == nil {
		pool, err = p.parse(b)
	}
	if err != nil {
		if b != nil || p.lastErr == nil || p.lastErr.Error() != err.Error() {
			p.m.reloadError(p.name)
			p.log.Error("CA bundle not reloaded; the one in force stays", "cert", p.name, "err", err)
		}
		p.last, p.lastErr = b, err
		return err
	}
	p.cur.Store(pool)
	p.last, p.lastErr = b, nil
	p.log.Info("CA bundle reloaded", "cert", p.name, "file", p.file)
	return nil
}

func orDefault(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}
