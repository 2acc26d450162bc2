package admin

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/tracing"
)

// TestBroadcastSpans: with tracing on, a broadcast is one server span
// (the child of the caller's span) with one client span per shard, each
// shard receiving its own span as parent; exported to a real OTLP
// receiver (the collector's trace service over grpc-go).
func TestBroadcastSpans(t *testing.T) {
	rcv := testutil.StartOTLPReceiver(t, "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	env := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"} // the default sampler: parent-based
	tr, err := tracing.New(context.Background(), tracing.Config{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{Broadcast: BroadcastConfig{Tracer: tr.Provider()}}, &topo)
	const traceID, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	r := call(t, "POST", a.url+"/broadcast/flush", nil, http.Header{"Traceparent": {"00-" + traceID + "-" + parent + "-01"}})
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	var root *testutil.Span
	children := map[string]testutil.Span{} // by shard name
	for i, s := range spans {
		if s.Name == "broadcast POST" {
			root = &spans[i]
		} else {
			children[s.Attrs["shard.name"].(string)] = s
		}
	}
	if root == nil || root.ParentID != parent || root.TraceID != traceID || root.Kind != 2 || len(spans) != 4 {
		t.Fatalf("spans %+v: want a broadcast server span, child of %s, and 3 shard spans", spans, parent)
	}
	for _, sh := range shards {
		c, ok := children[sh.Name]
		if !ok || c.ParentID != root.SpanID || c.TraceID != traceID || c.Kind != 3 /* client */ {
			t.Errorf("%s's span %+v, want a client span, child of %s", sh.Name, c, root.SpanID)
			continue
		}
		got := sh.Requests()[0].Header.Get("Traceparent")
		if got != "00-"+traceID+"-"+c.SpanID+"-01" {
			t.Errorf("%s got traceparent %q, want its own span %s as parent", sh.Name, got, c.SpanID)
		}
	}
}
