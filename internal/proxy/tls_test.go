package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// tlsFront is a proxy's TLS listener with the test CA its certificate
// comes from.
type tlsFront struct {
	addr string
	ca   *testutil.CA
	conf *tls.Config
}

// serveTLS serves r on a second, TLS, listener: a certificate for
// "proxy.test" from a new CA, with conf's client-side settings applied
// by mutate (may be nil).
func serveTLS(t testing.TB, r *running, mutate func(*tls.Config)) *tlsFront {
	t.Helper()
	ca := testutil.NewCA(t, "test CA")
	leaf := ca.Issue(t, time.Time{}, "proxy.test")
	conf := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: certs.ALPN, Certificates: []tls.Certificate{leaf.TLS}}
	if mutate != nil {
		mutate(conf)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.ServeTLS(ln, conf)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return &tlsFront{addr: ln.Addr().String(), ca: ca, conf: conf}
}

// client is a TLS client config that trusts the front's CA.
func (f *tlsFront) client(protos ...string) *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: "proxy.test", NextProtos: protos}
}

func (f *tlsFront) dial(t testing.TB, conf *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", f.addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *tlsFront) httpClient(t testing.TB, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: f.client(), ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestTLSRoutesAsCleartext: over TLS, HTTP/1.1 (ALPN http/1.1) and
// HTTP/2 (ALPN h2) requests reach the owner the cleartext port picks for
// the same key, the shard sees X-Forwarded-Proto: https (http on the
// cleartext port), and the answer carries X-Shard.
func TestTLSRoutesAsCleartext(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	var hs handshakes
	r := startProxy(t, Config{OnTLSHandshake: hs.hook()}, ring.Config{}, &topo)
	front := serveTLS(t, r, nil)
	plain := testutil.Client(t)
	for _, h2 := range []bool{false, true} {
		c := front.httpClient(t, h2)
		for k := range 8 {
			key := fmt.Sprint("acct-", k)
			want := testutil.Do(t, plain, keyed(t, r.url, key))
			req := keyed(t, "https://"+front.addr, key)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if wantProto := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != wantProto {
				t.Fatalf("h2=%v: answer over HTTP/%d, want HTTP/%d (ALPN)", h2, resp.ProtoMajor, wantProto)
			}
			if resp.StatusCode != 200 || resp.Header.Get("X-Shard") != want.Header.Get("X-Shard") {
				t.Fatalf("h2=%v key %s: %d from %q, want 200 from %q as in cleartext", h2, key, resp.StatusCode, resp.Header.Get("X-Shard"), want.Header.Get("X-Shard"))
			}
		}
	}
	seen := map[string]int{}
	for _, s := range shards {
		for _, rq := range s.Requests() {
			seen[rq.Header.Get("X-Forwarded-Proto")]++
		}
	}
	if seen["https"] != 16 || seen["http"] != 16 || len(seen) != 2 {
		t.Errorf("X-Forwarded-Proto seen by shards: %v, want 16 https (TLS) and 16 http (cleartext)", seen)
	}
	if got := hs.count(certs.OutcomeOK); got < 2 {
		t.Errorf("handshakes counted ok: %v, want at least 2", got)
	}
}

func keyed(t *testing.T, url, key string) *http.Request {
	req := testutil.NewRequest(t, "GET", url+"/acct", nil)
	req.Header.Set("X-Shard-Key", key)
	return req
}

// handshakes counts the outcomes OnTLSHandshake reports.
type handshakes struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *handshakes) hook() func(string) {
	h.n = map[string]int{}
	return func(outcome string) {
		h.mu.Lock()
		h.n[outcome]++
		h.mu.Unlock()
	}
}

func (h *handshakes) count(outcome string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[outcome]
}

// TestTLSPlaintextRequest: a plaintext HTTP/1.1 request on the TLS port
// gets a plaintext 400 with a JSON body, the connection is closed, and no
// shard hears of it.
func TestTLSPlaintextRequest(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	var hs handshakes
	r := startProxy(t, Config{OnTLSHandshake: hs.hook()}, ring.Config{}, &topo)
	front := serveTLS(t, r, nil)
	c, err := net.Dial("tcp", front.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Shard-Key: 1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error":"plaintext request on the TLS port`) {
		t.Fatalf("got %d %q %s, want 400 JSON naming the TLS port", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 400: %v, %v; want the connection closed", n, err)
	}
	if len(shards[0].Requests()) != 0 || hs.count(certs.OutcomePlaintext) != 1 {
		t.Errorf("shard got %d requests, plaintext handshakes %d; want 0 and 1", len(shards[0].Requests()), hs.count(certs.OutcomePlaintext))
	}
	// The listener still serves TLS afterwards.
	if resp, err := front.httpClient(t, false).Do(keyed(t, "https://"+front.addr, "1")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("TLS after a plaintext request: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestTLSVersionsAndMutualAuth: TLS 1.0 and 1.1 are refused, 1.2 and 1.3
// served; with a client CA, a client without a certificate (or with one
// from another CA) fails the handshake and one with a certificate from
// the CA is served.
func TestTLSVersionsAndMutualAuth(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	var hs handshakes
	r := startProxy(t, Config{OnTLSHandshake: hs.hook()}, ring.Config{}, &topo)
	clientCA := testutil.NewCA(t, "client CA")
	front := serveTLS(t, r, func(c *tls.Config) {
		c.ClientCAs = clientCA.Pool()
		c.ClientAuth = tls.RequireAndVerifyClientCert
	})
	good := clientCA.Issue(t, time.Time{}, "client.test")
	other := testutil.NewCA(t, "other CA").Issue(t, time.Time{}, "client.test")
	try := func(v uint16, cert *testutil.Leaf) error {
		conf := front.client("http/1.1")
		conf.MinVersion, conf.MaxVersion = v, v
		if cert != nil {
			conf.Certificates = []tls.Certificate{cert.TLS}
		}
		c, err := tls.Dial("tcp", front.addr, conf)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Shard-Key: 1\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err // TLS 1.3: a refused certificate shows at the first read
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if err := try(v, good); err != nil {
			t.Errorf("%s with a good client certificate: %v", tls.VersionName(v), err)
		}
		if err := try(v, nil); err == nil {
			t.Errorf("%s without a client certificate: served, want refused", tls.VersionName(v))
		}
		if err := try(v, other); err == nil {
			t.Errorf("%s with another CA's client certificate: served, want refused", tls.VersionName(v))
		}
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if err := try(v, good); err == nil {
			t.Errorf("%s: served, want refused", tls.VersionName(v))
		}
	}
	if hs.count(certs.OutcomeOK) != 2 || hs.count(certs.OutcomeFailed) == 0 {
		t.Errorf("handshakes ok %d, failed %d; want 2 ok and some failed", hs.count(certs.OutcomeOK), hs.count(certs.OutcomeFailed))
	}
}

// TestTLSGRPC: a grpc-go client with TLS credentials reaches h2c gRPC
// shards through the HTTP/2 relay, each call at its key's owner.
func TestTLSGRPC(t *testing.T) {
	shards, topo := startGRPCShards(t, 3)
	r := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	front := serveTLS(t, r, nil)
	cc, err := grpc.NewClient(front.addr, grpc.WithTransportCredentials(credentials.NewTLS(front.client())))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	for k := range 6 {
		key := fmt.Sprint(k)
		var hdr metadata.MD
		resp, err := c.UnaryCall(withKey(key), &testgrpc.SimpleRequest{}, grpc.Header(&hdr))
		if want := shards[k%3].name; err != nil || resp.GetUsername() != want || len(hdr.Get("x-shard")) != 1 || hdr.Get("x-shard")[0] != want {
			t.Fatalf("key %s: %v, %v, x-shard %v; want an answer from %s", key, resp, err, hdr.Get("x-shard"), want)
		}
		bidi, err := c.FullDuplexCall(withKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("m")}}); err != nil {
			t.Fatal(err)
		}
		m, err := bidi.Recv()
		if want := shards[k%3].name + ":m"; err != nil || string(m.GetPayload().GetBody()) != want {
			t.Fatalf("bidi key %s: %v, %v; want %s", key, m, err, want)
		}
		_ = bidi.CloseSend()
		if _, err := bidi.Recv(); err != io.EOF {
			t.Fatalf("bidi end: %v", err)
		}
	}
	if n := r.relay.Conns(); n != 1 {
		t.Errorf("relay serves %d connections, want the one TLS connection", n)
	}
}

// TestTLSRecordsSplitAndParked: a request head written one byte per TLS
// record is served; the connection then idles until it is parked (its
// socket in the parker, no goroutine), and the next request on it, sent
// as one record, is served on it too.
func TestTLSRecordsSplitAndParked(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	r := startProxy(t, Config{}, ring.Config{}, &topo)
	front := serveTLS(t, r, nil)
	c := front.dial(t, front.client("http/1.1"))
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	head := "GET /split HTTP/1.1\r\nHost: x\r\nX-Shard-Key: 1\r\n\r\n"
	for i := range len(head) {
		if _, err := c.Write([]byte{head[i]}); err != nil { // one record each
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("split head: %v, %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if runtime.GOOS == "linux" {
		eventually(t, "the idle TLS connection parked", func() bool { return r.inspectParked(t, nil) == 1 })
	}
	if _, err := io.WriteString(c, "GET /after HTTP/1.1\r\nHost: x\r\nX-Shard-Key: 1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after parking: %v, %v", resp, err)
	}
	resp.Body.Close()
	got := shards[0].Requests()
	if len(got) != 2 || got[0].URI != "/split" || got[1].URI != "/after" {
		t.Fatalf("shard got %v, want /split then /after", got)
	}
}

// TestTLSClientGoneCancels: a TLS client that leaves (close_notify, then
// FIN) while its shard works cancels the shard's request: bytes waiting
// on the socket (the alert) do not hide that the client is gone.
func TestTLSClientGoneCancels(t *testing.T) {
	arrived := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	shard := startHTTPShard(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	})
	r := startProxy(t, Config{UpstreamTimeout: 20 * time.Second}, ring.Config{}, rawTopology(shard))
	front := serveTLS(t, r, nil)
	c := front.dial(t, front.client("http/1.1"))
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	recv(t, arrived)
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the shard's request was not cancelled within 5s of the TLS client leaving")
	}
}

// TestRawSuiteOverTLS runs the HTTP/1.1 engine's raw-socket tests over a
// TLS connection (ALPN http/1.1): framing, 1xx, trailers, pipelining,
// smuggling refusals, streaming, client-gone, WebSocket tunnels. Reads
// and writes go through TLS records, whose boundaries are not the
// requests'. (TestLargeBodiesStreamInBoundedMemory is not among them: it
// counts the allocations of the whole process, the test's own TLS client
// included.)
func TestRawSuiteOverTLS(t *testing.T) {
	runOverTLS(t, []namedTest{
		{"InformationalAnswersRelayed", TestInformationalAnswersRelayed},
		{"ResponseBytesReachClientVerbatim", TestResponseBytesReachClientVerbatim},
		{"ConnectionCloseFromClient", TestConnectionCloseFromClient},
		{"HopByHopFieldsStripped", TestHopByHopFieldsStripped},
		{"HTTP10Client", TestHTTP10Client},
		{"ResponseTrailersRelayed", TestResponseTrailersRelayed},
		{"ExpectContinue", TestExpectContinue},
		{"PipelinedRequests", TestPipelinedRequests},
		{"AmbiguousHeaderKey", TestAmbiguousHeaderKey},
		{"RetryOnClosedPooledConnSendsBody", TestRetryOnClosedPooledConnSendsBody},
		{"BodilessAnswersKeepStep", TestBodilessAnswersKeepStep},
		{"AmbiguousRequestsRejected", TestAmbiguousRequestsRejected},
		{"ClientHeaderTimeout", TestClientHeaderTimeout},
		{"MalformedChunkedBodyRejected", TestMalformedChunkedBodyRejected},
		{"ResponsesStream", TestResponsesStream},
		{"ClientGoneCancelsShardRequest", TestClientGoneCancelsShardRequest},
		{"SlowUploadIsNotAShardTimeout", TestSlowUploadIsNotAShardTimeout},
		{"ShardFailsDuringUpload", TestShardFailsDuringUpload},
		{"BrokenResponseFramingIsContained", TestBrokenResponseFramingIsContained},
		{"WebSocketTunnel", TestWebSocketTunnel},
		{"RequestBytesReachShardVerbatim", TestRequestBytesReachShardVerbatim},
		{"HugeDeclaredLengthFromShard", TestHugeDeclaredLengthFromShard},
	})
}

// TestRelaySuiteOverTLS runs the HTTP/2 relay's frame tests over a TLS
// connection that chose h2 by ALPN (no HTTP/2 preface sniffing: the
// connection goes to the relay from the handshake).
func TestRelaySuiteOverTLS(t *testing.T) {
	runOverTLS(t, []namedTest{
		{"RelayFraming", TestRelayFraming},
		{"RelayMalformed", TestRelayMalformed},
		{"RelayFlowControl", TestRelayFlowControl},
		{"RelayIsolation", TestRelayIsolation},
		{"RelayManyStreams", TestRelayManyStreams},
		{"RelayClientCancel", TestRelayClientCancel},
		{"RelayPingSettings", TestRelayPingSettings},
		{"RelayEarlyHints", TestRelayEarlyHints},
		{"RelayProxyErrors", TestRelayProxyErrors},
		{"RelayHeaderBlocks", TestRelayHeaderBlocks},
		{"RelayWindowOverflow", TestRelayWindowOverflow},
		{"RelayHalfClosed", TestRelayHalfClosed},
		{"RelayRapidReset", TestRelayRapidReset},
		{"RelayShardMisbehaviour", TestRelayShardMisbehaviour},
		{"RelayInvalidStatus", TestRelayInvalidStatus},
		{"RelayProbesSilentShard", TestRelayProbesSilentShard},
		{"RelayUnreadBacklog", TestRelayUnreadBacklog},
		{"RelayReviewFindings", TestRelayReviewFindings},
	})
}

// namedTest is a test of the suite run again over TLS.
type namedTest struct {
	name string
	fn   func(*testing.T)
}

// runOverTLS runs each test with its raw connections dialled over TLS,
// failing one that dialled none (it would have proved nothing about TLS).
func runOverTLS(t *testing.T, tests []namedTest) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rawOverTLS = true
			defer func() { rawOverTLS = false }()
			before := rawTLSDials.Load()
			tc.fn(t)
			if rawTLSDials.Load() == before {
				t.Errorf("%s dialled no TLS connection", tc.name)
			}
		})
	}
}
