// Command grpcshard is the shard of "run.sh grpc": one process serving four
// (or however many) gRPC shards, each on its own loopback port.
//
// The gRPC shards serve grpc.testing.TestService (the interop test service
// of google.golang.org/grpc) with the native gRPC server; UnaryCall answers a
// payload of the requested size (ResponseSize, default 32 bytes) and sets the
// response header metadata x-backend to the shard's port, so the sanity
// check can tell which shard answered. The other methods are unimplemented.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

func main() {
	grpcAddrs := flag.String("grpc", "127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083,127.0.0.1:18084",
		"comma-separated addresses, one gRPC shard each")
	respBytes := flag.Int("resp-bytes", 32, "payload size of an answer when the request does not set ResponseSize")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("grpcshard: ")

	var servers []*grpc.Server
	for _, addr := range split(*grpcAddrs) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		srv := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(srv, &service{port: port, respBytes: *respBytes})
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil {
				log.Fatal(err)
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, s := range servers {
		s.Stop()
	}
}

func split(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

type service struct {
	testgrpc.UnimplementedTestServiceServer
	port      string
	respBytes int
}

// UnaryCall answers ResponseSize bytes (or -resp-bytes) and names the shard
// in the x-backend header metadata.
func (s *service) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-backend", s.port))
	n := int(req.GetResponseSize())
	if n <= 0 {
		n = s.respBytes
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: fill(n)}}, nil
}

var filler = []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 1<<12))

func fill(n int) []byte {
	return filler[:min(n, len(filler))]
}
