package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/internal/watch/kube"
)

// defaultTLSListen is where the TLS data listener listens once it has a
// certificate.
const defaultTLSListen = ":8443"

// tlsOptions are the TLS flags (DESIGN.md section 14).
type tlsOptions struct {
	listen, certFile, keyFile, clientCAFile string

	shardTLS, shardInsecure                             bool
	shardCAFile, shardCertFile, shardKeyFile, shardName string

	adminCertFile, adminKeyFile, adminClientCA string
}

func tlsFlags(fs *flag.FlagSet, t *tlsOptions) {
	fs.StringVar(&t.listen, "tls-listen", defaultTLSListen, "TLS data plane address (served once --tls-cert-file and --tls-key-file are given)")
	fs.StringVar(&t.certFile, "tls-cert-file", "", "PEM certificate (chain) of the TLS data listener; re-read when it changes")
	fs.StringVar(&t.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file; re-read when it changes")
	fs.StringVar(&t.clientCAFile, "tls-client-ca-file", "", "PEM CA bundle: the TLS data listener requires client certificates under it (mTLS)")
	fs.BoolVar(&t.shardTLS, "shard-tls", false, "with --shards or --dns-service: speak TLS to every shard (in Kubernetes: appProtocol https, or the Service annotation shard-proxy.io/shard-tls)")
	fs.StringVar(&t.shardCAFile, "shard-ca-file", "", "PEM CA bundle shard certificates are verified against (required with shard TLS)")
	fs.StringVar(&t.shardCertFile, "shard-cert-file", "", "PEM client certificate presented to shards (mTLS)")
	fs.StringVar(&t.shardKeyFile, "shard-key-file", "", "PEM private key of --shard-cert-file")
	fs.StringVar(&t.shardName, "shard-server-name", "", "name a shard's certificate must hold, also sent as SNI (default "+watch.DefaultServerName+"; placeholders {pod} {ordinal} {statefulset} {service} {namespace} {domain})")
	fs.StringVar(&t.adminCertFile, "admin-tls-cert-file", "", "PEM certificate: serve the admin plane over TLS (may be --tls-cert-file's)")
	fs.StringVar(&t.adminKeyFile, "admin-tls-key-file", "", "PEM private key of --admin-tls-cert-file")
	fs.StringVar(&t.adminClientCA, "admin-client-ca-file", "", "PEM CA bundle: every admin endpoint but /healthz, /readyz and /metrics requires a client certificate under it")
	fs.BoolVar(&t.shardInsecure, "shard-tls-insecure-skip-verify", false, "TESTING ONLY: speak TLS to shards without verifying their certificates")
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
	return o.validateShardTLS()
}

// validateShardTLS checks the flags of TLS to shards.
func (o *options) validateShardTLS() error {
	t := &o.tls
	inUse := t.shardTLS || strings.Contains(o.shards, "https://")
	switch {
	case t.shardTLS && o.shards == "" && o.dnsSvc == "":
		return fmt.Errorf("%s goes with --shards or --dns-service (in Kubernetes a port's appProtocol https or the Service annotation %s say it)", o.name("shard-tls"), kube.AnnotationShardTLS)
	case (t.shardCertFile == "") != (t.shardKeyFile == ""):
		return fmt.Errorf("%s and %s go together: the client certificate shards are shown and its key", o.name("shard-cert-file"), o.name("shard-key-file"))
	case inUse && t.shardCAFile == "" && !t.shardInsecure:
		return fmt.Errorf("TLS to shards needs %s (the CA their certificates are verified against); %s is for testing only", o.name("shard-ca-file"), o.name("shard-tls-insecure-skip-verify"))
	case t.shardInsecure && t.shardCAFile != "":
		return fmt.Errorf("%s and %s contradict each other: give one", o.name("shard-ca-file"), o.name("shard-tls-insecure-skip-verify"))
	case (t.adminCertFile == "") != (t.adminKeyFile == ""):
		return fmt.Errorf("%s and %s go together: the admin plane's certificate and its key", o.name("admin-tls-cert-file"), o.name("admin-tls-key-file"))
	case t.adminClientCA != "" && t.adminCertFile == "":
		return fmt.Errorf("%s needs %s and %s (client certificates need TLS)", o.name("admin-client-ca-file"), o.name("admin-tls-cert-file"), o.name("admin-tls-key-file"))
	case t.shardName != "" && o.kubeSvc == "" && o.dnsSvc == "":
		return fmt.Errorf("%s goes with --kube-service or --dns-service (a --shards URL's host is the name its certificate must hold)", o.name("shard-server-name"))
	}
	if t.shardName != "" {
		if err := watch.CheckServerName(t.shardName); err != nil {
			return fmt.Errorf("%s: %w", o.name("shard-server-name"), err)
		}
	}
	return nil
}

// tlsSetup is the TLS material the app serves with, and what keeps it
// current.
type tlsSetup struct {
	metrics *certs.Metrics
	reload  []certs.Reloader
	data    *tls.Config // nil without a TLS data listener
	shard   *certs.ShardClient
	// admin is the admin plane's (nil: cleartext); adminMTLS, it wants
	// client certificates.
	admin     *tls.Config
	adminMTLS bool
}

// loadTLS reads every certificate, key and CA file the options name; the
// error names the file at fault.
func loadTLS(o *options, reg prometheus.Registerer, log *slog.Logger) (*tlsSetup, error) {
	s := &tlsSetup{metrics: certs.NewMetrics(reg)}
	t := &o.tls
	if err := s.loadShard(o, log); err != nil {
		return nil, err
	}
	if err := s.loadAdmin(o, log); err != nil {
		return nil, err
	}
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

// loadShard reads the shard CA and client certificate, if any.
func (s *tlsSetup) loadShard(o *options, log *slog.Logger) error {
	t := &o.tls
	var ca *certs.Pool
	var kp *certs.KeyPair
	var err error
	if t.shardCAFile != "" {
		if ca, err = certs.LoadPool("shard-ca", t.shardCAFile, s.metrics, log); err != nil {
			return fmt.Errorf("%s: %w", o.name("shard-ca-file"), err)
		}
		s.reload = append(s.reload, ca)
	}
	if t.shardCertFile != "" {
		if kp, err = certs.LoadKeyPair("shard-client", t.shardCertFile, t.shardKeyFile, s.metrics, log); err != nil {
			return fmt.Errorf("shard client certificate: %w", err)
		}
		s.reload = append(s.reload, kp)
	}
	if ca != nil || t.shardInsecure {
		s.shard = certs.NewShardClient(ca, kp, t.shardInsecure)
	}
	if t.shardInsecure {
		log.Warn("shard certificates are not verified (--shard-tls-insecure-skip-verify): any server at a shard's address is taken for it; for testing only")
	}
	return nil
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
		if a.dataLn, err = proxy.Listen(o.listen); err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
	}
	if a.tls.data != nil {
		if a.tlsLn, err = proxy.Listen(o.tls.listen); err != nil {
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

// adminTransport is the CLI's transport to an admin endpoint: for https,
// verifying it under --admin-ca-file (else the system roots) and showing
// --admin-cert-file when given. The files are refused for http, so that a
// token is never sent in clear by mistake.
func adminTransport(o *clientOptions, https bool) (http.RoundTripper, error) {
	if !https {
		if o.caFile != "" || o.certFile != "" {
			return nil, fmt.Errorf("--admin-ca-file and --admin-cert-file go with an https --admin URL (got %q)", o.admin)
		}
		return http.DefaultTransport, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-ca-file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--admin-ca-file %s: no PEM certificate in it", o.caFile)
		}
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("--admin-cert-file and --admin-key-file go together")
	}
	if o.certFile != "" {
		kp, err := certs.LoadKeyPair("admin-client", o.certFile, o.keyFile, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, fmt.Errorf("admin client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{*kp.Certificate()}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	return tr, nil
}

// loadAdmin reads the admin plane's TLS material: its certificate, and with a client
// CA the client certificates every endpoint but the probes and /metrics
// require.
func (s *tlsSetup) loadAdmin(o *options, log *slog.Logger) error {
	t := &o.tls
	if t.adminCertFile == "" {
		return nil
	}
	kp, err := certs.LoadKeyPair("admin", t.adminCertFile, t.adminKeyFile, s.metrics, log)
	if err != nil {
		return fmt.Errorf("admin TLS certificate: %w", err)
	}
	s.reload = append(s.reload, kp)
	var ca *certs.Pool
	if t.adminClientCA != "" {
		if ca, err = certs.LoadPool("admin-client-ca", t.adminClientCA, s.metrics, log); err != nil {
			return fmt.Errorf("%s: %w", o.name("admin-client-ca-file"), err)
		}
		s.reload = append(s.reload, ca)
	}
	s.admin = certs.ServerConfigCounting(kp, ca, true, nil, func() { s.metrics.Handshake("admin", certs.OutcomeOK) })
	s.adminMTLS = ca != nil
	return nil
}

// handshakeErrors is the admin server's ErrorLog writer: net/http logs a
// failed TLS handshake there ("http: TLS handshake error from ..."); it
// is counted, and the rest goes to the debug log.
type handshakeErrors struct {
	m   *certs.Metrics
	log *slog.Logger
}

func (h handshakeErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		outcome := certs.OutcomeFailed
		if strings.Contains(msg, "timeout") {
			outcome = certs.OutcomeTimeout
		}
		h.m.Handshake("admin", outcome)
	}
	h.log.Debug("admin server", "msg", msg)
	return len(p), nil
}

// probePaths are the admin endpoints served without a client certificate:
// kubelet probes and Prometheus scrapes carry none.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requireClientCert answers 401 to a request without a verified client
// certificate, but on probePaths.
func requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !probePaths[r.URL.Path] && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"client certificate required"}`+"\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}
