package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/certs"
)

// defaultTLSListen is where the TLS data listener listens once it has a
// certificate.
const defaultTLSListen = ":8443"

// tlsOptions are the TLS flags (DESIGN.md section 14).
type tlsOptions struct {
	listen, certFile, keyFile, clientCAFile string
}

func tlsFlags(fs *flag.FlagSet, t *tlsOptions) {
	fs.StringVar(&t.listen, "tls-listen", defaultTLSListen, "TLS data plane address (served once --tls-cert-file and --tls-key-file are given)")
	fs.StringVar(&t.certFile, "tls-cert-file", "", "PEM certificate (chain) of the TLS data listener; re-read when it changes")
	fs.StringVar(&t.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file; re-read when it changes")
	fs.StringVar(&t.clientCAFile, "tls-client-ca-file", "", "PEM CA bundle: the TLS data listener requires client certificates under it (mTLS)")
}

// on tells whether the TLS data listener is configured.
func (t *tlsOptions) on() bool { return t.certFile != "" }

// validateTLS checks that the TLS flags go together.
func (o *options) validateTLS() error {
	t := &o.tls
	switch {
	case (t.certFile == "") != (t.keyFile == ""):
		return fmt.Errorf("%s and %s go together: the TLS listener's certificate and its key", o.name("tls-cert-file"), o.name("tls-key-file"))
	case t.clientCAFile != "" && !t.on():
		return fmt.Errorf("%s needs %s and %s (it is the TLS listener's client CA)", o.name("tls-client-ca-file"), o.name("tls-cert-file"), o.name("tls-key-file"))
	case t.on() && t.listen == "":
		return fmt.Errorf("%s \"\": the TLS listener needs an address such as %s", o.name("tls-listen"), defaultTLSListen)
	case !t.on() && o.listen == "":
		return fmt.Errorf("%s \"\" turns the cleartext listener off; give %s and %s for a TLS one, or a --listen address", o.name("listen"), o.name("tls-cert-file"), o.name("tls-key-file"))
	}
	return nil
}

// tlsSetup is the TLS material the app serves with, and what keeps it
// current.
type tlsSetup struct {
	metrics *certs.Metrics
	reload  []certs.Reloader
	data    *tls.Config // nil without a TLS data listener
}

// loadTLS reads every certificate, key and CA file the options name; the
// error names the file at fault.
func loadTLS(o *options, reg prometheus.Registerer, log *slog.Logger) (*tlsSetup, error) {
	s := &tlsSetup{metrics: certs.NewMetrics(reg)}
	t := &o.tls
	if !t.on() {
		return s, nil
	}
	kp, err := certs.LoadKeyPair("listener", t.certFile, t.keyFile, s.metrics, log)
	if err != nil {
		return nil, fmt.Errorf("TLS listener certificate: %w", err)
	}
	s.reload = append(s.reload, kp)
	var ca *certs.Pool
	if t.clientCAFile != "" {
		if ca, err = certs.LoadPool("client-ca", t.clientCAFile, s.metrics, log); err != nil {
			return nil, fmt.Errorf("%s: %w", o.name("tls-client-ca-file"), err)
		}
		s.reload = append(s.reload, ca)
	}
	s.data = certs.ServerConfig(kp, ca, false, certs.ALPN)
	return s, nil
}

// watch keeps the material current until ctx ends.
func (s *tlsSetup) watch(ctx context.Context) {
	if len(s.reload) > 0 {
		certs.Watch(ctx, certs.DefaultInterval, s.reload...)
	}
}

// listenData opens the data listeners the options ask for: cleartext
// unless --listen is "", TLS with a certificate.
func (a *app) listenData(o *options) (err error) {
	if o.listen != "" {
		if a.dataLn, err = net.Listen("tcp", o.listen); err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
	}
	if a.tls.data != nil {
		if a.tlsLn, err = net.Listen("tcp", o.tls.listen); err != nil {
			return fmt.Errorf("%s: %w", o.name("tls-listen"), err)
		}
	}
	return nil
}

// addr is ln's address for the startup log, "" when ln is off.
func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
