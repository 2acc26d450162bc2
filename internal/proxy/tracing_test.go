package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/tracing"
	"github.com/shard-proxy/shard-proxy/ring"
)

// startTracer makes a tracer exporting to a real OTLP receiver speaking
// protocol, with the OTEL_* variables env adds. flush exports what is
// buffered (as shutdown does) and returns the received spans.
func startTracer(t testing.TB, protocol string, env map[string]string) (tr *tracing.Tracer, flush func() []testutil.Span) {
	t.Helper()
	rcv := testutil.StartOTLPReceiver(t, protocol)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	all := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_SERVICE_NAME": "proxy-under-test"}
	for k, v := range env {
		all[k] = v
	}
	tr, err := tracing.New(context.Background(), tracing.Config{Getenv: func(k string) string { return all[k] }})
	if err != nil {
		t.Fatal(err)
	}
	flushed := false
	t.Cleanup(func() {
		if !flushed {
			_ = tr.Shutdown(context.Background())
		}
	})
	return tr, func() []testutil.Span {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			t.Fatalf("flushing spans: %v", err)
		}
		flushed = true
		return rcv.Spans()
	}
}

// waitRecorded waits until the proxy ended n requests' records (the
// span ends just before requests_total counts it): a client can have its
// whole answer a moment before.
func waitRecorded(t *testing.T, p *running, n int) {
	t.Helper()
	waitUntil(t, 5*time.Second, fmt.Sprintf("%d requests recorded", n), func() bool {
		families, err := p.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range families {
			if mf.GetName() == "shard_proxy_requests_total" {
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total >= float64(n)
	})
}

const (
	clientTrace  = "0af7651916cd43dd8448eb211c80319c"
	clientSpan   = "b7ad6b7169203331"
	sampledTP    = "00-" + clientTrace + "-" + clientSpan + "-01"
	notSampledTP = "00-" + clientTrace + "-" + clientSpan + "-00"
)

// get sends GET path with key and, when not "", traceparent; it returns
// the traceparent the shard received ("" for none).
func tracedGet(t *testing.T, p *running, shard *testutil.Shard, path, key, traceparent string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.url+path, nil)
	req.Header.Set("X-Shard-Key", key)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
		req.Header.Set("Tracestate", "vendor=abc")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	reqs := shard.Requests()
	if len(reqs) == 0 {
		t.Fatal("the shard got no request")
	}
	last := reqs[len(reqs)-1]
	if traceparent != "" && last.Header.Get("Tracestate") != "vendor=abc" {
		t.Errorf("the shard got tracestate %q, want the client's", last.Header.Get("Tracestate"))
	}
	if n := len(last.Header.Values("Traceparent")); n > 1 {
		t.Fatalf("the shard got %d traceparent fields", n)
	}
	return last.Header.Get("Traceparent")
}

// TestTracingHTTP1 (OTLP over gRPC): a sampled client trace gets a
// server span, child of the client's span, with the HTTP and shard.*
// attributes, and the shard's traceparent names that span; a trace the
// client did not sample, or none at the default 1% ratio 0, passes
// untouched and exports nothing.
func TestTracingHTTP1(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	tr, flush := startTracer(t, "grpc", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0"})
	p := startProxy(t, Config{Tracer: tr}, ring.Config{Algorithm: ring.Modulus}, &topo)

	gotSampled := tracedGet(t, p, shards[1], "/a/b?q=secret", "1", sampledTP)
	if got := tracedGet(t, p, shards[1], "/c", "1", notSampledTP); got != notSampledTP {
		t.Errorf("not sampled: the shard got traceparent %q, want the client's %q untouched", got, notSampledTP)
	}
	if got := tracedGet(t, p, shards[1], "/d", "1", ""); got != "" {
		t.Errorf("no trace context, not sampled: the shard got traceparent %q, want none", got)
	}
	waitRecorded(t, p, 3)
	spans := flush()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1: %+v", len(spans), spans)
	}
	s := spans[0]
	if want := "00-" + clientTrace + "-" + s.SpanID + "-01"; gotSampled != want {
		t.Errorf("the shard got traceparent %q, want %q (the proxy's span as parent)", gotSampled, want)
	}
	if s.TraceID != clientTrace || s.ParentID != clientSpan || s.Name != "GET" || s.Kind != 2 /* server */ ||
		s.Service != "proxy-under-test" || s.TraceState != "vendor=abc" {
		t.Errorf("span %+v: want trace %s, parent %s, name GET, kind server, service proxy-under-test", s, clientTrace, clientSpan)
	}
	want := map[string]any{
		"http.request.method": "GET", "url.path": "/a/b", "url.scheme": "http", "network.protocol.version": "1.1",
		"http.response.status_code": int64(200), "shard.name": "web-1", "shard.ordinal": int64(1),
		"shard.ring": p.Table().Fingerprint, "shard.owner_wait_ms": float64(0), "server.address": shards[1].Addr,
		"client.address": "127.0.0.1", "shard.rule": "header:X-Shard-Key",
	}
	for k, v := range want {
		if fmt.Sprint(s.Attrs[k]) != fmt.Sprint(v) {
			t.Errorf("attribute %s = %v, want %v", k, s.Attrs[k], v)
		}
	}
	for k, v := range s.Attrs {
		if strings.Contains(fmt.Sprint(v), "secret") {
			t.Errorf("attribute %s holds the query: %v", k, v)
		}
	}
}

// TestTracingRootAndH2 (OTLP/HTTP at /v1/traces, always_on): a request
// that came without a trace context starts a trace; over HTTP/2 the
// shard still receives the proxy's span as its parent.
func TestTracingRootAndH2(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	tr, flush := startTracer(t, "http/protobuf", map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	p := startProxy(t, Config{Tracer: tr}, ring.Config{Algorithm: ring.Modulus}, &topo)
	got1 := tracedGet(t, p, shards[0], "/root", "0", "")
	c := h2cClient(t)
	req, _ := http.NewRequest("POST", p.url+"/h2", strings.NewReader("x"))
	req.Header.Set("X-Shard-Key", "0")
	req.Header.Set("Traceparent", sampledTP)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := shards[0].Requests()
	got2 := reqs[len(reqs)-1].Header.Get("Traceparent")
	waitRecorded(t, p, 2)
	spans := flush()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	root, h2 := spans[0], spans[1]
	if root.ParentID != "" || got1 != "00-"+root.TraceID+"-"+root.SpanID+"-01" {
		t.Errorf("root span %+v; the shard got %q", root, got1)
	}
	if h2.TraceID != clientTrace || h2.ParentID != clientSpan || got2 != "00-"+clientTrace+"-"+h2.SpanID+"-01" ||
		h2.Attrs["network.protocol.version"] != "2" || h2.Name != "POST" {
		t.Errorf("HTTP/2 span %+v; the shard got %q", h2, got2)
	}
}

// TestTracingGRPC: a gRPC call's span carries rpc.grpc.status_code, and
// the grpc-go shard sees the proxy's span as its parent.
func TestTracingGRPC(t *testing.T) {
	shards, topo := startGRPCShards(t, 2)
	tr, flush := startTracer(t, "grpc", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
	p := startProxy(t, Config{Tracer: tr}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialGRPC(t, p.url)
	ctx := metadata.AppendToOutgoingContext(withKey("1"), "traceparent", sampledTP)
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	var shardCtx context.Context
	select {
	case shardCtx = <-shards[1].started:
	case <-time.After(5 * time.Second):
		t.Fatal("the shard did not see the call")
	}
	md, _ := metadata.FromIncomingContext(shardCtx)
	waitRecorded(t, p, 1)
	spans := flush()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if got := md.Get("traceparent"); len(got) != 1 || got[0] != "00-"+clientTrace+"-"+s.SpanID+"-01" {
		t.Errorf("the shard got traceparent %v, want the proxy's span %s", got, s.SpanID)
	}
	if s.Attrs["rpc.grpc.status_code"] != int64(0) || s.Attrs["shard.name"] != "g-1" || s.Attrs["url.path"] != "/grpc.testing.TestService/UnaryCall" {
		t.Errorf("span attributes %v", s.Attrs)
	}
}

// TestTracingOwnerWait: a request held for its owner has an owner-wait
// event on its span.
func TestTracingOwnerWait(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	topo.Shards[1].Ready = false
	tr, flush := startTracer(t, "grpc", map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	p := startProxy(t, Config{Tracer: tr, OwnerWait: 5 * time.Second}, ring.Config{Algorithm: ring.Modulus}, &topo)
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", p.url+"/held", nil)
		req.Header.Set("X-Shard-Key", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}()
	waitUntil(t, 5*time.Second, "the request is held", func() bool { return p.router.Waiting() == 1 })
	topo.Shards[1].Ready = true
	p.apply(t, topo)
	if st := <-done; !strings.HasPrefix(st, "200") {
		t.Fatalf("held request: %s", st)
	}
	waitRecorded(t, p, 1)
	spans := flush()
	if len(spans) != 1 || len(spans[0].Events) != 1 || spans[0].Events[0] != "owner-wait" {
		t.Fatalf("spans %+v, want one with an owner-wait event", spans)
	}
	if w, _ := spans[0].Attrs["shard.owner_wait_ms"].(float64); w <= 0 {
		t.Errorf("shard.owner_wait_ms = %v, want > 0", spans[0].Attrs["shard.owner_wait_ms"])
	}
}
