package proxy

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// h2AllocsPerRequest sends n GETs on one HTTP/2 connection from the lean
// client (traceparent as given, "" for none) and returns the process's
// allocations per request.
func h2AllocsPerRequest(t *testing.T, p *running, n int, traceparent string) float64 {
	t.Helper()
	c := dialH2Lean(t, p, traceparent)
	for range 1000 { // warm: pools, stream workers, the shard connection
		c.get(t)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		c.get(t)
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.Mallocs-m0.Mallocs) / float64(n)
}

// TestTracingNotSampledH2Allocations: an HTTP/2 GET relayed to an
// HTTP/1.1 shard that the tracer does not sample (the client's
// traceparent says so, or none came and the ratio draws no) allocates
// no more than with tracing off, in the whole process.
func TestTracingNotSampledH2Allocations(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector allocates on its own")
	}
	topo := startLeanShard(t)
	off := startProxy(t, Config{HotKeySample: -1}, ring.Config{}, &topo)
	tr, _ := startTracer(t, "grpc", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0"})
	on := startProxy(t, Config{HotKeySample: -1, Tracer: tr}, ring.Config{}, &topo)
	const n = 3000
	for _, tc := range []struct{ name, traceparent string }{
		{"client did not sample", notSampledTP},
		{"no trace context, ratio 0", ""},
	} {
		// The same request to both: HPACK decodes the literal fields.
		base := h2AllocsPerRequest(t, off, n, tc.traceparent)
		got := h2AllocsPerRequest(t, on, n, tc.traceparent)
		t.Logf("%s: %.3f allocations per request (tracing off: %.3f)", tc.name, got, base)
		if got > base+0.1 { // a stream described or timed for nothing would cost whole allocations
			t.Errorf("%s: %.3f allocations per request, want no more than tracing off's %.3f", tc.name, got, base)
		}
	}
}

// TestTracingH2ToHTTP1Spans (OTLP over gRPC): over HTTP/2 to an HTTP/1.1
// shard, and over TLS, a sampled request's span is complete though only
// the tracer records (its request is described once the tracer sampled
// it): name, the HTTP attributes (TLS: scheme https), the client's
// address, the body sizes, the shard.* attributes. The requests it does
// not sample pass their traceparent untouched and export nothing; with
// the access log on as well, TLS requests' lines say tls true.
func TestTracingH2ToHTTP1Spans(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	tr, flush := startTracer(t, "grpc", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0"})
	al := openAccessLog(t, accesslog.Config{})
	plain := startProxy(t, Config{Tracer: tr}, ring.Config{Algorithm: ring.Modulus}, &topo)
	logged := startProxy(t, Config{Tracer: tr, AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	front := serveTLS(t, logged, nil)

	h2 := h2cClient(t)
	var protos http.Protocols
	protos.SetHTTP2(true)
	tlsTr := &http.Transport{Protocols: &protos, TLSClientConfig: front.client("h2")}
	t.Cleanup(tlsTr.CloseIdleConnections)
	h2tls := &http.Client{Transport: tlsTr, Timeout: 10 * time.Second}
	h1tls := &http.Client{Transport: &http.Transport{TLSClientConfig: front.client("http/1.1")}, Timeout: 10 * time.Second}
	t.Cleanup(h1tls.CloseIdleConnections)

	get := func(c *http.Client, url, tp string, wantProto int) string {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-Shard-Key", "1")
		if tp != "" {
			req.Header.Set("Traceparent", tp)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != wantProto {
			t.Fatalf("%s: %s over HTTP/%d, want 200 over HTTP/%d", url, resp.Status, resp.ProtoMajor, wantProto)
		}
		reqs := shards[1].Requests()
		return reqs[len(reqs)-1].Header.Get("Traceparent")
	}
	tlsURL := "https://" + front.addr
	if got := get(h2, plain.url+"/skip", notSampledTP, 2); got != notSampledTP {
		t.Errorf("not sampled: the shard got traceparent %q, want the client's %q", got, notSampledTP)
	}
	if got := get(h2, plain.url+"/none", "", 2); got != "" {
		t.Errorf("no trace context, not sampled: the shard got traceparent %q, want none", got)
	}
	got := map[string]string{
		"/h2/a": get(h2, plain.url+"/h2/a?q=1", sampledTP, 2),
		"/h2s":  get(h2tls, tlsURL+"/h2s", sampledTP, 2),
		"/h1s":  get(h1tls, tlsURL+"/h1s", sampledTP, 1),
	}
	waitRecorded(t, plain, 2+1)
	waitRecorded(t, logged, 2)
	spans := flush()
	if len(spans) != 3 {
		t.Fatalf("%d spans exported, want 3 (the sampled requests): %+v", len(spans), spans)
	}
	for _, s := range spans {
		path, _ := s.Attrs["url.path"].(string)
		want := map[string]any{
			"http.request.method": "GET", "url.path": path, "url.scheme": "https", "network.protocol.version": "2",
			"http.response.status_code": 200, "shard.name": "web-1", "shard.ordinal": 1,
			"shard.ring": plain.Table().Fingerprint, "shard.owner_wait_ms": 0.0, "server.address": shards[1].Addr,
			"client.address": "127.0.0.1", "network.peer.address": "127.0.0.1", "shard.rule": "header:X-Shard-Key",
			"network.protocol.name": "http", "http.request.body.size": 0,
			"http.response.body.size": len(`{"shard":"web-1"}`),
		}
		switch path {
		case "/h2/a":
			want["url.scheme"] = "http"
		case "/h1s":
			want["network.protocol.version"] = "1.1"
		case "/h2s":
		default:
			t.Fatalf("a span for %q: %+v", path, s)
		}
		if tp := got[path]; tp != "00-"+clientTrace+"-"+s.SpanID+"-01" {
			t.Errorf("%s: the shard got traceparent %q, want the proxy's span %s as parent", path, tp, s.SpanID)
		}
		if s.Name != "GET" || s.TraceID != clientTrace || s.ParentID != clientSpan {
			t.Errorf("%s: span %q in trace %s under %s, want GET in %s under %s", path, s.Name, s.TraceID, s.ParentID,
				clientTrace, clientSpan)
		}
		for k, v := range want {
			if fmt.Sprint(s.Attrs[k]) != fmt.Sprint(v) {
				t.Errorf("%s: attribute %s = %v, want %v", path, k, s.Attrs[k], v)
			}
		}
		if port, _ := s.Attrs["client.port"].(int64); port <= 0 {
			t.Errorf("%s: client.port = %v, want the client's port", path, s.Attrs["client.port"])
		}
		if len(s.Attrs) != len(want)+1 {
			t.Errorf("%s: %d attributes, want %d: %v", path, len(s.Attrs), len(want)+1, s.Attrs)
		}
	}
	for _, l := range al.lines(t, 2) {
		checkLine(t, l, map[string]any{"tls": true, "client": hasPrefix("127.0.0.1:"), "method": "GET", "shard": "web-1"})
	}
}
