package testutil

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is a real OTLP trace receiver on a loopback port: the
// collector's trace service over grpc-go, or OTLP/HTTP at /v1/traces with
// protobuf bodies. It keeps every span it is sent.
type OTLPReceiver struct {
	// Endpoint is the URL to give OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string
	// Protocol is grpc or http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string

	mu    sync.Mutex
	spans []Span
	coltracepb.UnimplementedTraceServiceServer
}

// Span is a received span with what tests look at, ids in hex.
type Span struct {
	Name, TraceID, SpanID, ParentID string
	TraceState                      string
	Kind                            tracepb.Span_SpanKind
	Attrs                           map[string]any
	Events                          []string
	Service                         string
	Status                          tracepb.Status_StatusCode
	Start, End                      time.Time
}

// StartOTLPReceiver starts a receiver speaking protocol (grpc or
// http/protobuf); it stops when the test ends.
func StartOTLPReceiver(t testing.TB, protocol string) *OTLPReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &OTLPReceiver{Endpoint: "http://" + ln.Addr().String(), Protocol: protocol}
	if protocol == "grpc" {
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, r)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		return r
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// Export implements the collector's trace service.
func (r *OTLPReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *OTLPReceiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(req.Body)
	var msg coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &msg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&msg)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *OTLPReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, convertSpan(s, service))
			}
		}
	}
}

func convertSpan(s *tracepb.Span, service string) Span {
	out := Span{Name: s.GetName(), TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
		ParentID: hex.EncodeToString(s.GetParentSpanId()), TraceState: s.GetTraceState(), Kind: s.GetKind(),
		Attrs: map[string]any{}, Service: service,
		Status: s.GetStatus().GetCode(),
		Start:  time.Unix(0, int64(s.GetStartTimeUnixNano())), End: time.Unix(0, int64(s.GetEndTimeUnixNano()))}
	for _, kv := range s.GetAttributes() {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out.Attrs[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out.Attrs[kv.GetKey()] = v.IntValue
		case *commonpb.AnyValue_DoubleValue:
			out.Attrs[kv.GetKey()] = v.DoubleValue
		case *commonpb.AnyValue_BoolValue:
			out.Attrs[kv.GetKey()] = v.BoolValue
		}
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, e.GetName())
	}
	return out
}

// Spans returns the spans received so far.
func (r *OTLPReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}
