package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestTLSStartRefuses: TLS material that cannot be served stops the start
// with one line naming the file at fault; flags that do not go together
// are refused with status 2.
func TestTLSStartRefuses(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "test CA")
	a, b := ca.Issue(t, time.Time{}, "proxy.test"), ca.Issue(t, time.Time{}, "proxy.test")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key, otherKey := write("tls.crt", a.CertPEM), write("tls.key", a.KeyPEM), write("other.key", b.KeyPEM)
	garbage, missing := write("garbage.pem", []byte("not PEM\n")), filepath.Join(dir, "missing.crt")
	base := []string{"--shards", testutil.DeadAddr(t), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing cert", []string{"--tls-cert-file", missing, "--tls-key-file", key}, 1, []string{missing, "no such file"}},
		{"cert not PEM", []string{"--tls-cert-file", garbage, "--tls-key-file", key}, 1, []string{garbage, "CERTIFICATE"}},
		{"key does not match", []string{"--tls-cert-file", cert, "--tls-key-file", otherKey}, 1, []string{otherKey, "does not match"}},
		{"key not PEM", []string{"--tls-cert-file", cert, "--tls-key-file", garbage}, 1, []string{garbage}},
		{"client CA not PEM", []string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-file", garbage}, 1, []string{"--tls-client-ca-file", garbage}},
		{"cert without key", []string{"--tls-cert-file", cert}, 2, []string{"--tls-cert-file", "--tls-key-file", "together"}},
		{"client CA without cert", []string{"--tls-client-ca-file", cert}, 2, []string{"--tls-client-ca-file", "--tls-cert-file"}},
		{"no listener at all", []string{"--listen", ""}, 2, []string{"--listen", "--tls-cert-file"}},
		{"shard TLS without a CA", []string{"--shard-tls"}, 2, []string{"--shard-ca-file", "--shard-tls-insecure-skip-verify"}},
		{"https shard without a CA", []string{"--shards", "https://127.0.0.1:1"}, 2, []string{"--shard-ca-file"}},
		{"shard client cert without key", []string{"--shard-tls", "--shard-ca-file", cert, "--shard-cert-file", cert}, 2, []string{"--shard-cert-file", "--shard-key-file"}},
		{"server name with static shards", []string{"--shard-tls", "--shard-ca-file", cert, "--shard-server-name", "{pod}.x"}, 2, []string{"--shard-server-name", "--dns-service"}},
		{"bad server name template", []string{"--shards", "", "--dns-service", "web.ns", "--replicas", "2", "--port", "80", "--shard-tls", "--shard-ca-file", cert, "--shard-server-name", "{pods}.x"}, 2, []string{"--shard-server-name", "{pods}.x", "{ordinal}"}},
		{"shard CA not PEM", []string{"--shard-tls", "--shard-ca-file", garbage}, 1, []string{"--shard-ca-file", garbage}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{}, base...), tc.args...)
			if code := cli(args, envOf(nil), &stdout, &stderr, nil); code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			line := strings.TrimSuffix(stderr.String(), "\n")
			if line == "" || strings.Contains(line, "\n") {
				t.Fatalf("stderr %q, want one line", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not contain %q", line, w)
				}
			}
		})
	}
}

// TestTLSListenerReload runs the binary with its certificate in a Secret
// volume laid out as the kubelet does: HTTPS requests are served (the
// shard sees X-Forwarded-Proto: https); swapping the volume's ..data
// symlink to a new certificate puts it in use for new handshakes within
// 10 s while a connection opened before goes on; a broken key then is
// refused, counted, and the certificate in force stays; the expiry gauge
// follows the certificate in use.
func TestTLSListenerReload(t *testing.T) {
	shard := testutil.StartShards(t, 1, "web")[0]
	ca := testutil.NewCA(t, "test CA")
	first := ca.Issue(t, time.Now().Add(48*time.Hour), "proxy.test")
	vol := testutil.NewSecretDir(t)
	vol.Write(map[string][]byte{"tls.crt": first.CertPEM, "tls.key": first.KeyPEM})
	p := startProxy(t, "--shards", shard.URL, "--tls-listen", "127.0.0.1:0",
		"--tls-cert-file", vol.Path("tls.crt"), "--tls-key-file", vol.Path("tls.key"))
	rec := waitLog(t, p.logs, "shard-proxy starting", p.done, startTimeout)
	tlsAddr, _ := rec["tls_listen"].(string)
	if tlsAddr == "" {
		t.Fatalf("no tls_listen in the startup line: %v", rec)
	}
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.test", NextProtos: []string{"http/1.1"}}
	served := func() time.Time { // the NotAfter of the certificate a new handshake gets
		c, err := tls.Dial("tcp", tlsAddr, conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].NotAfter
	}
	kept, err := tls.Dial("tcp", tlsAddr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	br := bufio.NewReader(kept)
	get := func() {
		t.Helper()
		_ = kept.SetDeadline(time.Now().Add(waitTimeout))
		fmt.Fprint(kept, "GET /x HTTP/1.1\r\nHost: proxy.test\r\nX-Shard-Key: 1\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request on the kept connection: %v, %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get()
	if got := shard.Requests()[0].Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("shard saw X-Forwarded-Proto %q, want https", got)
	}
	if got := gauge(t, p, `shard_proxy_tls_cert_expiry_timestamp_seconds{cert="listener"}`); got != float64(first.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want %d", got, first.NotAfter.Unix())
	}

	second := ca.Issue(t, time.Now().Add(72*time.Hour), "proxy.test")
	swapped := time.Now()
	vol.Write(map[string][]byte{"tls.crt": second.CertPEM, "tls.key": second.KeyPEM})
	eventually(t, 10*time.Second, "new handshakes get the new certificate", func() bool {
		return served().Equal(second.NotAfter)
	})
	t.Logf("the new certificate was in use %v after the swap", time.Since(swapped).Round(time.Millisecond))
	get() // the connection opened before the swap goes on

	vol.Write(map[string][]byte{"tls.crt": ca.Issue(t, time.Time{}, "proxy.test").CertPEM, "tls.key": first.KeyPEM})
	eventually(t, 10*time.Second, "the mismatched key is counted", func() bool {
		return gauge(t, p, `shard_proxy_tls_reload_errors_total{cert="listener"}`) == 1
	})
	if got := served(); !got.Equal(second.NotAfter) {
		t.Errorf("after a broken update, new handshakes get a certificate expiring %v, want the one in force (%v)", got, second.NotAfter)
	}
	if got := gauge(t, p, `shard_proxy_tls_cert_expiry_timestamp_seconds{cert="listener"}`); got != float64(second.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want the certificate in force (%d)", got, second.NotAfter.Unix())
	}
	if got := gauge(t, p, `shard_proxy_tls_handshakes_total{listener="data",outcome="ok"}`); got < 3 {
		t.Errorf("handshakes ok %v, want at least 3", got)
	}
}

// TestShardTLSProcess: the binary reaches a --shards https:// shard whose
// certificate is valid for the URL's host, under --shard-ca-file, and
// /shards says so.
func TestShardTLSProcess(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	leaf := ca.Issue(t, time.Time{}, "127.0.0.1")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "tls shard")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--shards", srv.URL, "--shard-ca-file", caFile)
	a := p.send(t, http.MethodGet, "/x", "k", nil)
	if a.Status != 200 || string(a.Body) != "tls shard" {
		t.Fatalf("request: %d %s, want 200 from the TLS shard", a.Status, a.Body)
	}
	s := p.adminGet(t, "/shards")
	if body := strings.ReplaceAll(string(s.Body), " ", ""); !strings.Contains(body, `"tls":"verified"`) || !strings.Contains(body, `"tls_name":"127.0.0.1"`) {
		t.Errorf("/shards: %s, want tls verified for 127.0.0.1", s.Body)
	}
}

// gauge is the value of one series of the proxy's /metrics, -1 if absent.
func gauge(t *testing.T, p *proxyProc, series string) float64 {
	t.Helper()
	resp, err := p.client.Get(p.adminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// TestAdminTLS: the admin plane over TLS with client certificates
// required: the probes and /metrics answer without one, /shards gets 401
// without one and 200 with one; the CLI reaches it with --admin-ca-file,
// --admin-cert-file and --admin-key-file, or their SHARD_PROXY_ variables,
// and fails with one line without the client certificate.
func TestAdminTLS(t *testing.T) {
	shard := testutil.StartShards(t, 1, "web")[0]
	ca, clientCA := testutil.NewCA(t, "admin CA"), testutil.NewCA(t, "operators CA")
	srv, cli1 := ca.Issue(t, time.Time{}, "127.0.0.1"), clientCA.Issue(t, time.Time{}, "operator")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, clientCAFile := write("ca.crt", ca.PEM), write("client-ca.crt", clientCA.PEM)
	certFile, keyFile := write("tls.crt", srv.CertPEM), write("tls.key", srv.KeyPEM)
	cliCert, cliKey := write("op.crt", cli1.CertPEM), write("op.key", cli1.KeyPEM)
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	p := startProxyAdmin(t, anon, "https", "--shards", shard.URL,
		"--admin-tls-cert-file", certFile, "--admin-tls-key-file", keyFile, "--admin-client-ca-file", clientCAFile)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/shards": 401} {
		a := testutil.Do(t, anon, testutil.NewRequest(t, http.MethodGet, p.adminURL(path), nil))
		if a.Status != want {
			t.Errorf("GET %s without a client certificate: %d, want %d", path, a.Status, want)
		}
	}
	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cli1.TLS}}}}
	if a := testutil.Do(t, withCert, testutil.NewRequest(t, http.MethodGet, p.adminURL("/shards"), nil)); a.Status != 200 {
		t.Errorf("GET /shards with a client certificate: %d, want 200", a.Status)
	}
	// A client certificate from another CA (sent whatever CAs the server
	// names) fails the handshake: counted.
	strangerCert := testutil.NewCA(t, "stranger CA").Issue(t, time.Time{}, "x").TLS
	stranger := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }}}
	if resp, err := (&http.Client{Transport: stranger, Timeout: 10 * time.Second}).Get(p.adminURL("/healthz")); err == nil {
		resp.Body.Close()
		t.Error("a client certificate from another CA was let in")
	}
	stranger.CloseIdleConnections()
	eventually(t, waitTimeout, "admin handshakes counted", func() bool {
		return gauge(t, p, `shard_proxy_tls_handshakes_total{listener="admin",outcome="ok"}`) >= 2 &&
			gauge(t, p, `shard_proxy_tls_handshakes_total{listener="admin",outcome="failed"}`) >= 1
	})
	anon.CloseIdleConnections()
	withCert.CloseIdleConnections()

	admin := p.adminURL("")
	var stdout, stderr bytes.Buffer
	if code := cli([]string{"shards", "--admin", admin, "--admin-ca-file", caFile, "--admin-cert-file", cliCert, "--admin-key-file", cliKey}, envOf(nil), &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "shard-0") {
		t.Errorf("shards with flags: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	env := map[string]string{"SHARD_PROXY_ADMIN": admin, "SHARD_PROXY_ADMIN_CA_FILE": caFile, "SHARD_PROXY_ADMIN_CERT_FILE": cliCert, "SHARD_PROXY_ADMIN_KEY_FILE": cliKey}
	if code := cli([]string{"shards"}, envOf(env), &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "shard-0") {
		t.Errorf("shards with variables: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code := cli([]string{"shards", "--admin", admin, "--admin-ca-file", caFile}, envOf(nil), &stdout, &stderr, nil)
	if line := strings.TrimSuffix(stderr.String(), "\n"); code == 0 || line == "" || strings.Contains(line, "\n") || !strings.Contains(line, "client certificate required") {
		t.Errorf("shards without a client certificate: exit %d, stderr %q; want one line saying a client certificate is required", code, stderr.String())
	}
	stderr.Reset()
	code = cli([]string{"shards", "--admin", "http://" + p.admin, "--admin-ca-file", caFile}, envOf(nil), &stdout, &stderr, nil)
	if code == 0 || !strings.Contains(stderr.String(), "https") {
		t.Errorf("--admin-ca-file with an http URL: exit %d, stderr %q; want refused", code, stderr.String())
	}
}
