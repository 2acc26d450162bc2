package certs

import (
	"crypto/tls"

	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	tu "github.com/shard-proxy/shard-proxy/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, tu.LeakOptions()...) }

// TestKeyPairReload: a Secret-volume swap puts the new pair in force; a
// broken update (a key that does not match) is refused once, counted
// once however often it is looked at, and the pair in force stays; a good
// update after it is taken.
func TestKeyPairReload(t *testing.T) {
	ca := tu.NewCA(t, "test CA")
	a, b, c := ca.Issue(t, time.Time{}, "a.test"), ca.Issue(t, time.Time{}, "b.test"), ca.Issue(t, time.Time{}, "c.test")
	vol := tu.NewSecretDir(t)
	vol.Write(map[string][]byte{"tls.crt": a.CertPEM, "tls.key": a.KeyPEM})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	kp, err := LoadKeyPair("listener", vol.Path("tls.crt"), vol.Path("tls.key"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string { return kp.Certificate().Leaf.DNSNames[0] }
	errs := func() float64 { return testutil.ToFloat64(m.reloadErrors.WithLabelValues("listener")) }

	vol.Write(map[string][]byte{"tls.crt": b.CertPEM, "tls.key": b.KeyPEM})
	if err := kp.Reload(); err != nil || name() != "b.test" {
		t.Fatalf("after the swap: %v, serving %s; want b.test", err, name())
	}
	vol.Write(map[string][]byte{"tls.crt": c.CertPEM, "tls.key": a.KeyPEM})
	for range 3 {
		if err := kp.Reload(); err == nil {
			t.Fatal("a key that does not match was taken")
		}
	}
	if name() != "b.test" || errs() != 1 {
		t.Fatalf("after a broken update: serving %s with %v errors counted; want b.test and 1", name(), errs())
	}
	vol.Write(map[string][]byte{"tls.crt": c.CertPEM, "tls.key": c.KeyPEM})
	if err := kp.Reload(); err != nil || name() != "c.test" {
		t.Fatalf("after a good update: %v, serving %s; want c.test", err, name())
	}
	if got := testutil.ToFloat64(m.expiries.WithLabelValues("listener")); got != float64(c.NotAfter.Unix()) {
		t.Errorf("expiry %v, want %d", got, c.NotAfter.Unix())
	}
}

// TestClientCAReload: a server config with a client CA bundle requires
// client certificates under the bundle in force; after the bundle file
// is swapped for another CA, the new CA's clients get in and the old
// one's are refused, on real TLS connections.
func TestClientCAReload(t *testing.T) {
	serverCA, oldCA, newCA := tu.NewCA(t, "server CA"), tu.NewCA(t, "old client CA"), tu.NewCA(t, "new client CA")
	srvLeaf := serverCA.Issue(t, time.Time{}, "proxy.test")
	vol := tu.NewSecretDir(t)
	vol.Write(map[string][]byte{"tls.crt": srvLeaf.CertPEM, "tls.key": srvLeaf.KeyPEM, "ca.crt": oldCA.PEM})
	kp, err := LoadKeyPair("listener", vol.Path("tls.crt"), vol.Path("tls.key"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadPool("client-ca", vol.Path("ca.crt"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := ServerConfig(kp, pool, false, ALPN)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	try := func(leaf *tu.Leaf) bool {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: serverCA.Pool(), ServerName: "proxy.test", Certificates: []tls.Certificate{leaf.TLS}})
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var b [2]byte
		_, err = c.Read(b[:]) // TLS 1.3: a refused certificate shows here
		return err == nil
	}
	oldClient, newClient := oldCA.Issue(t, time.Time{}, "client"), newCA.Issue(t, time.Time{}, "client")
	if !try(oldClient) || try(newClient) {
		t.Fatal("before the swap: want the old CA's client in and the new one's out")
	}
	vol.Write(map[string][]byte{"tls.crt": srvLeaf.CertPEM, "tls.key": srvLeaf.KeyPEM, "ca.crt": newCA.PEM})
	if err := pool.Reload(); err != nil {
		t.Fatal(err)
	}
	if try(oldClient) || !try(newClient) {
		t.Fatal("after the swap: want the new CA's client in and the old one's out")
	}
}
