package proxy

import (
	"context"
	"strconv"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/tracing"
	"github.com/shard-proxy/shard-proxy/ring"
)

// BenchmarkGRPCUnary measures unary calls through the proxy to h2c
// shards, with keys spread over them, b.N calls from parallel callers on
// one client connection.
func BenchmarkGRPCUnary(b *testing.B) { benchGRPCUnary(b, Config{}) }

// BenchmarkGRPCUnaryAccessLog is BenchmarkGRPCUnary with every call
// logged to a file; against it, with -cpuprofile, it gives the access
// log's cost per HTTP/2 stream (route.(*Router).Done, the line, the
// writer).
func BenchmarkGRPCUnaryAccessLog(b *testing.B) {
	al := openAccessLog(b, accesslog.Config{})
	benchGRPCUnary(b, Config{AccessLog: al.log})
}

// BenchmarkGRPCUnaryTracing is BenchmarkGRPCUnary with tracing at the
// default 1% sampling, exporting to a real OTLP receiver: against it, what
// tracing costs the requests it does not sample (and 1% of the others).
func BenchmarkGRPCUnaryTracing(b *testing.B) {
	rcv := testutil.StartOTLPReceiver(b, "grpc")
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	env := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
	tr, err := tracing.New(context.Background(), tracing.Config{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	benchGRPCUnary(b, Config{Tracer: tr})
}

func benchGRPCUnary(b *testing.B, cfg Config) {
	_, topo := startGRPCShards(b, 4)
	p := startProxy(b, cfg, ring.Config{}, &topo)
	c := dialGRPC(b, p.url)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := c.UnaryCall(withKey(strconv.Itoa(i)), &testgrpc.SimpleRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
