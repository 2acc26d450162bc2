package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/tracing"
)

// startTracing makes the tracer shard-proxy --tracing otlp makes, at the
// sampling ratio given, exporting over OTLP/HTTP to a sink in this
// process that reads and drops every batch (a collector's cost is not the
// proxy's).
func startTracing(ratio string) (*tracing.Tracer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sink := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = sink.Serve(ln) }()
	if err := os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String()); err != nil {
		return nil, err
	}
	env := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_SAMPLER_ARG": ratio}
	return tracing.New(context.Background(), tracing.Config{Getenv: func(k string) string { return env[k] }})
}
