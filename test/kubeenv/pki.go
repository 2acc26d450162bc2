package kubeenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// pki holds the PEM material of one control plane: a CA, the API server's
// serving certificate, an admin client certificate in system:masters (the
// three made by testutil.CA, as the tests' other certificates are) and the
// service account signing key pair.
type pki struct {
	caCert, serverCert, serverKey, adminCert, adminKey []byte
	saKey, saPub                                       []byte
}

// files written by writePKI, as passed to kube-apiserver.
type pkiFiles struct {
	ca, serverCert, serverKey, saKey, saPub string
}

func newPKI() (*pki, error) {
	ca, err := testutil.MakeCA("shard-proxy-test-ca")
	if err != nil {
		return nil, err
	}
	p := &pki{caCert: ca.PEM}
	server, err := ca.Sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	p.serverCert, p.serverKey = server.CertPEM, server.KeyPEM
	// Organization system:masters is bound to cluster-admin by the API
	// server's bootstrap policy, so this identity can do anything.
	admin, err := ca.Sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "shard-proxy-test-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing admin certificate: %w", err)
	}
	p.adminCert, p.adminKey = admin.CertPEM, admin.KeyPEM

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saKeyDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	p.saKey = pemBlock("EC PRIVATE KEY", saKeyDER)
	p.saPub = pemBlock("PUBLIC KEY", saPubDER)
	return p, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *pki) write(dir string) (pkiFiles, error) {
	f := pkiFiles{
		ca:         filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		saPub:      filepath.Join(dir, "sa.pub"),
	}
	for path, data := range map[string][]byte{
		f.ca: p.caCert, f.serverCert: p.serverCert, f.serverKey: p.serverKey,
		f.saKey: p.saKey, f.saPub: p.saPub,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return pkiFiles{}, err
		}
	}
	return f, nil
}
