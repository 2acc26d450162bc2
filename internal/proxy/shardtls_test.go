package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// tlsShard is a real HTTPS server standing in for one pod of a
// StatefulSet: its certificate is for its pod's stable name.
type tlsShard struct {
	name, tlsName, addr string
	requests            atomic.Int32 // HTTP requests its handler saw
	handshakes, resumed atomic.Int32
	srv                 *httptest.Server
}

// podName is the stable name of pod web-i, as the default
// --shard-server-name makes it.
func podName(i int) string {
	return watch.ServerName("", watch.NameParts{Pod: fmt.Sprintf("web-%d", i), Service: "web", Namespace: "ns", Domain: "cluster.local"})
}

// startTLSShard serves h (nil: 200 naming the shard) over TLS with a
// certificate from ca for certName; mutate may change its config (client
// certificates).
func startTLSShard(t *testing.T, ca *testutil.CA, name, certName string, h http.HandlerFunc, mutate func(*tls.Config)) *tlsShard {
	t.Helper()
	s := &tlsShard{name: name, tlsName: certName}
	leaf := ca.Issue(t, time.Time{}, certName)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("X-Proto-Seen", r.Header.Get("X-Forwarded-Proto"))
		fmt.Fprint(w, s.name)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.handshakes.Add(1)
			if cs.DidResume {
				s.resumed.Add(1)
			}
			return nil
		}}
	if mutate != nil {
		mutate(s.srv.TLS)
	}
	s.srv.StartTLS()
	s.addr = s.srv.Listener.Addr().String()
	t.Cleanup(s.srv.Close)
	return s
}

// shardTopology is a ready topology of TLS shards, each to be verified for
// the pod name of its ordinal.
func shardTopology(shards ...*tlsShard) watch.Topology {
	topo := watch.Topology{Replicas: len(shards)}
	for i, s := range shards {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: s.addr, Ready: true, TLS: true, TLSName: podName(i)})
	}
	return topo
}

// shardClient trusts ca (written as a file, as --shard-ca-file reads it).
func shardClient(t *testing.T, ca *testutil.CA, cert *testutil.Leaf) *certs.ShardClient {
	t.Helper()
	vol := testutil.NewSecretDir(t)
	files := map[string][]byte{"ca.crt": ca.PEM}
	if cert != nil {
		files["tls.crt"], files["tls.key"] = cert.CertPEM, cert.KeyPEM
	}
	vol.Write(files)
	pool, err := certs.LoadPool("shard-ca", vol.Path("ca.crt"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kp *certs.KeyPair
	if cert != nil {
		if kp, err = certs.LoadKeyPair("shard-client", vol.Path("tls.crt"), vol.Path("tls.key"), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	return certs.NewShardClient(pool, kp, false)
}

func getKey(t *testing.T, c *http.Client, url, key string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(keyed(t, url, key))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestShardTLS: HTTP/1.1 requests reach TLS shards, each verified for its
// pod's name, keys owned as in cleartext (modulus: key k on web-k%3);
// pooled connections resume their TLS session.
func TestShardTLS(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	var shards []*tlsShard
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	for i := range 3 {
		var h http.HandlerFunc
		if i == 0 {
			h = func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("hold") != "" {
					arrived <- struct{}{}
					<-release
				}
				if r.URL.Query().Get("slow") != "" {
					time.Sleep(150 * time.Millisecond) // past the engine's hot wait: the request waits parked
				}
				fmt.Fprint(w, "web-0")
			}
		}
		shards = append(shards, startTLSShard(t, ca, fmt.Sprintf("web-%d", i), podName(i), h, nil))
	}
	topo := shardTopology(shards...)
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil)}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	for k := range 6 {
		code, body, hdr := getKey(t, c, r.url, fmt.Sprint(k))
		if want := fmt.Sprintf("web-%d", k%3); code != 200 || body != want || hdr.Get("X-Shard") != want {
			t.Fatalf("key %d: %d %q from %q, want 200 from %s", k, code, body, hdr.Get("X-Shard"), want)
		}
	}
	// Three requests at once on web-0: two more connections, each resuming
	// the session of the first.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req := keyed(t, r.url+"?hold=1", "0")
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	for range 3 {
		recv(t, arrived)
	}
	close(release)
	wg.Wait()
	if h, res := shards[0].handshakes.Load(), shards[0].resumed.Load(); h < 3 || res < h-1 {
		t.Errorf("web-0: %d handshakes, %d resumed; want every one after the first resumed", h, res)
	}
	// A slow answer on a pooled TLS connection, from a cleartext and a
	// TLS client: the waits park on the sockets under TLS.
	front := serveTLS(t, r, nil)
	for _, u := range []struct {
		url string
		c   *http.Client
	}{{r.url, c}, {"https://" + front.addr, front.httpClient(t, false)}} {
		for range 3 {
			if code, body, _ := getKey(t, u.c, u.url+"?slow=1", "0"); code != 200 || body != "web-0" {
				t.Fatalf("slow answer via %s: %d %q, want 200 from web-0", u.url, code, body)
			}
		}
	}
}

// TestShardIdentityMismatch: web-1's address is taken by an impostor that
// holds web-2's valid certificate (a stale EndpointSlice after a
// restart). A request for a web-1 key is held for --owner-wait, then
// answered 502 "shard identity mismatch" naming web-1; the impostor gets
// no HTTP request; the mismatch is counted by reason; other shards are
// unaffected; when the topology gives web-1's real address, a held
// request is served there. Without --owner-wait, 502 at once.
func TestShardIdentityMismatch(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	web0 := startTLSShard(t, ca, "web-0", podName(0), nil, nil)
	web1 := startTLSShard(t, ca, "web-1", podName(1), nil, nil)
	impostor := startTLSShard(t, ca, "impostor", podName(2), nil, nil)
	topo := shardTopology(web0, web1)
	topo.Shards[1].Addr = impostor.addr
	const wait = 400 * time.Millisecond
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil), OwnerWait: wait}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)

	start := time.Now()
	code, body, hdr := getKey(t, c, r.url, "1")
	if took := time.Since(start); took < wait {
		t.Errorf("answered after %v, want the request held for --owner-wait (%v)", took, wait)
	}
	if code != 502 || !strings.Contains(body, `"error":"shard identity mismatch"`) || !strings.Contains(body, `"shard":"web-1"`) || hdr.Get("X-Shard") != "web-1" {
		t.Fatalf("key 1: %d %s (X-Shard %q), want 502 shard identity mismatch for web-1", code, body, hdr.Get("X-Shard"))
	}
	if code, body, _ := getKey(t, c, r.url, "0"); code != 200 || body != "web-0" {
		t.Fatalf("key 0 (web-0): %d %s, want 200 from web-0", code, body)
	}
	if n := impostor.requests.Load(); n != 0 || impostor.handshakes.Load() == 0 {
		t.Fatalf("the impostor saw %d handshakes and %d HTTP requests, want handshakes and no request", impostor.handshakes.Load(), n)
	}
	if got := r.metric("shard_proxy_shard_tls_errors_total", "shard", "web-1", "reason", "identity"); got < 1 {
		t.Errorf("shard_tls_errors_total{web-1,identity} = %v, want >= 1", got)
	}

	// Held, then served once the topology has web-1's real address.
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(keyed(t, r.url, "1"))
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	eventually(t, "the request is held", func() bool { return r.router.Waiting() == 1 })
	r.apply(t, shardTopology(web0, web1))
	if got := recv(t, done); got.code != 200 || got.body != "web-1" {
		t.Fatalf("held request after the topology change: %d %s, want 200 from web-1", got.code, got.body)
	}
	if n := impostor.requests.Load(); n != 0 {
		t.Fatalf("the impostor got %d HTTP requests", n)
	}

	// Without --owner-wait: 502 at once.
	q := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil)}, ring.Config{Algorithm: ring.Modulus}, &topo)
	for range 2 { // the first finds out, the second knows
		if code, body, _ := getKey(t, c, q.url, "1"); code != 502 || !strings.Contains(body, "shard identity mismatch") {
			t.Fatalf("without owner-wait: %d %s, want 502 shard identity mismatch", code, body)
		}
	}
	if n := impostor.requests.Load(); n != 0 {
		t.Fatalf("the impostor got %d HTTP requests", n)
	}
}

// TestShardTLSFailures: a shard whose certificate is not under the CA,
// and one that does not speak TLS, are answered 502 "shard TLS handshake
// failed" with the reason, counted, and nothing is held.
func TestShardTLSFailures(t *testing.T) {
	ca, other := testutil.NewCA(t, "shard CA"), testutil.NewCA(t, "other CA")
	foreign := startTLSShard(t, other, "web-0", podName(0), nil, nil)
	plain := testutil.StartShards(t, 1, "plain")[0]
	topo := shardTopology(foreign, foreign)
	topo.Shards[1].Addr = plain.Addr
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil), OwnerWait: 5 * time.Second}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	for key, reason := range map[string]string{"0": "unknown_authority", "1": "handshake"} {
		start := time.Now()
		code, body, _ := getKey(t, c, r.url, key)
		if code != 502 || !strings.Contains(body, `"error":"shard TLS handshake failed"`) || !strings.Contains(body, `"reason":"`+reason+`"`) {
			t.Errorf("key %s: %d %s, want 502 shard TLS handshake failed, reason %s", key, code, body, reason)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("key %s: answered after %v; a failed handshake that is not a mismatch is not held", key, took)
		}
		if got := r.metric("shard_proxy_shard_tls_errors_total", "shard", fmt.Sprintf("web-%s", key), "reason", reason); got < 1 {
			t.Errorf("shard_tls_errors_total{web-%s,%s} = %v, want >= 1", key, reason, got)
		}
	}
	if n := foreign.requests.Load() + int32(len(plain.Requests())); n != 0 {
		t.Errorf("%d HTTP requests reached shards that failed the handshake", n)
	}
}

// TestShardMutualTLS: shards that require a client certificate get the
// proxy's (--shard-cert-file); without one they refuse it.
func TestShardMutualTLS(t *testing.T) {
	ca, clientCA := testutil.NewCA(t, "shard CA"), testutil.NewCA(t, "client CA")
	s := startTLSShard(t, ca, "web-0", podName(0), nil, func(c *tls.Config) {
		c.ClientCAs, c.ClientAuth = clientCA.Pool(), tls.RequireAndVerifyClientCert
	})
	topo := shardTopology(s)
	with := startProxy(t, Config{ShardTLS: shardClient(t, ca, clientCA.Issue(t, time.Time{}, "shard-proxy"))}, ring.Config{}, &topo)
	without := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil)}, ring.Config{}, &topo)
	c := testutil.Client(t)
	if code, body, _ := getKey(t, c, with.url, "k"); code != 200 || body != "web-0" {
		t.Fatalf("with a client certificate: %d %s, want 200", code, body)
	}
	if code, _, _ := getKey(t, c, without.url, "k"); code != 502 {
		t.Fatalf("without a client certificate: %d, want 502", code)
	}
}

// TestShardTLSGRPC: gRPC shards served over TLS (ALPN h2), each with its
// pod's certificate, reached through the HTTP/2 relay from a cleartext
// grpc-go client and from a TLS one; HTTP/1.1 requests for them go
// through the bridge over TLS too.
func TestShardTLSGRPC(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	topo := watch.Topology{Replicas: 2}
	var names []string
	for i := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		leaf := ca.Issue(t, time.Time{}, podName(i))
		s := &grpcShard{name: fmt.Sprintf("web-%d", i), addr: ln.Addr().String(), started: make(chan context.Context, 64)}
		srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&leaf.TLS)))
		testgrpc.RegisterTestServiceServer(srv, s)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		names = append(names, s.name)
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.name, Addr: s.addr, Ready: true, Protocol: watch.H2C, TLS: true, TLSName: podName(i)})
	}
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil)}, ring.Config{Algorithm: ring.Modulus}, &topo)
	front := serveTLS(t, r, nil)
	tlsConn, err := grpc.NewClient(front.addr, grpc.WithTransportCredentials(credentials.NewTLS(front.client())))
	if err != nil {
		t.Fatal(err)
	}
	defer tlsConn.Close()
	for _, c := range []testgrpc.TestServiceClient{dialGRPC(t, r.url), testgrpc.NewTestServiceClient(tlsConn)} {
		for k := range 4 {
			resp, err := c.UnaryCall(withKey(fmt.Sprint(k)), &testgrpc.SimpleRequest{})
			if want := names[k%2]; err != nil || resp.GetUsername() != want {
				t.Fatalf("key %d: %v, %v; want an answer from %s", k, resp, err, want)
			}
		}
	}
}

// serveTLSAt is startTLSShard on a given address (one another server just
// left).
func serveTLSAt(t *testing.T, ca *testutil.CA, addr, name, certName string) *tlsShard {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsShard{name: name, tlsName: certName, addr: addr}
	leaf := ca.Issue(t, time.Time{}, certName)
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		fmt.Fprint(w, s.name)
	})}}
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, VerifyConnection: func(tls.ConnectionState) error {
		s.handshakes.Add(1)
		return nil
	}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// TestShardReplacedByImpostor: web-1 was verified and served; then the
// server at its address is replaced by one holding web-2's valid
// certificate (the topology did not change: a stale EndpointSlice). The
// first request for a web-1 key after that is held for --owner-wait too,
// then answered 502 "shard identity mismatch"; the impostor gets no HTTP
// request. When the real web-1 is back at the address while a request is
// held, that request is served by it.
func TestShardReplacedByImpostor(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	web0 := startTLSShard(t, ca, "web-0", podName(0), nil, nil)
	web1 := startTLSShard(t, ca, "web-1", podName(1), nil, nil)
	topo := shardTopology(web0, web1)
	// Long enough for two looks (one a second) after the real web-1 is back.
	const wait = 3 * time.Second
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil), OwnerWait: wait}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	if code, body, _ := getKey(t, c, r.url, "1"); code != 200 || body != "web-1" {
		t.Fatalf("before: %d %s, want 200 from web-1", code, body)
	}
	addr := web1.addr
	web1.srv.Close()
	impostor := serveTLSAt(t, ca, addr, "impostor", podName(2))

	start := time.Now()
	code, body, _ := getKey(t, c, r.url, "1")
	if took := time.Since(start); code != 502 || !strings.Contains(body, "shard identity mismatch") || took < wait {
		t.Fatalf("after the swap: %d %s after %v, want 502 shard identity mismatch after --owner-wait (%v)", code, body, took, wait)
	}
	if code, body, _ := getKey(t, c, r.url, "0"); code != 200 || body != "web-0" {
		t.Fatalf("web-0 meanwhile: %d %s", code, body)
	}

	before := impostor.handshakes.Load()
	done := make(chan string, 1)
	go func() {
		resp, err := c.Do(keyed(t, r.url, "1"))
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	eventually(t, "the held request tried the impostor", func() bool { return impostor.handshakes.Load() > before })
	impostor.srv.Close()
	serveTLSAt(t, ca, addr, "web-1", podName(1))
	if got := recv(t, done); got != "200 web-1" {
		t.Fatalf("held request after the real web-1 came back: %q, want 200 web-1", got)
	}
	if n := impostor.requests.Load(); n != 0 {
		t.Fatalf("the impostor got %d HTTP requests", n)
	}
}

// TestShardTLSScheme: a request relayed to an HTTP/2 shard over TLS
// carries :scheme https (h2c shards get http). The shard here is a TLS
// listener that reads the relay's first HEADERS frame itself.
func TestShardTLSScheme(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	leaf := ca.Issue(t, time.Time{}, podName(0))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	scheme := make(chan string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(wireTimeout))
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(nc, preface); err != nil {
			return
		}
		fr := http2.NewFramer(nc, nc)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				scheme <- "no HEADERS: " + err.Error()
				return
			}
			if mh, ok := f.(*http2.MetaHeadersFrame); ok {
				scheme <- mh.PseudoValue("scheme")
				return
			}
		}
	}()
	topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{{Ordinal: 0, Name: "web-0", Addr: ln.Addr().String(), Ready: true,
		Protocol: watch.H2C, TLS: true, TLSName: podName(0)}}}
	r := startProxy(t, Config{ShardTLS: shardClient(t, ca, nil), UpstreamTimeout: 2 * time.Second}, ring.Config{}, &topo)
	c := dialRelay(t, r.url, bigWindows)
	if err := c.headers(1, reqHead("GET", "/x", "k"), true); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, scheme); got != "https" {
		t.Fatalf("the TLS shard got :scheme %q, want https", got)
	}
}
