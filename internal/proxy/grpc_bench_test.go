package proxy

import (
	"strconv"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
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
