package proxy

import (
	"strconv"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/ring"
)

// BenchmarkGRPCUnary measures unary calls through the proxy to h2c
// shards, with keys spread over them, b.N calls from parallel callers on
// one client connection.
func BenchmarkGRPCUnary(b *testing.B) {
	_, topo := startGRPCShards(b, 4)
	p := startProxy(b, Config{}, ring.Config{}, &topo)
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
