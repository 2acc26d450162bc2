package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// podService is the gRPC test service as a pod serves it: every answer
// names the pod.
type podService struct {
	testgrpc.UnimplementedTestServiceServer
	pod string
}

func (s podService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Username: s.pod}, nil
}

func (s podService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(s.pod)}}); err != nil {
			return err
		}
	}
}

func grpcPods(p kubeenv.Pod) http.Handler {
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, podService{pod: p.Name})
	return srv
}

// testGRPC: a gRPC StatefulSet whose Service port says appProtocol
// kubernetes.io/h2c is spoken to over HTTP/2; gRPC calls, unary and
// streaming, reach the owner of their x-shard-key.
func testGRPC(t *testing.T, env *kubeenv.Env) {
	ns := env.Namespace(t)
	env.StartKubelet(t, ns, kubeenv.WithHandler(grpcPods))
	env.CreateStatefulSet(t, ns, kubeenv.StatefulSet{Name: "web", Replicas: 3, PortName: "grpc", Port: 9000, AppProtocol: "kubernetes.io/h2c"})
	p := startProxy(t, "p", env.Kubeconfig, ns, "--port", "grpc") // the flag given last wins
	p.waitShards(t, podTimeout, "3 ready h2c shards", func(a shardsAnswer) error {
		if a.Ready != 3 {
			return fmt.Errorf("%d ready", a.Ready)
		}
		for _, s := range a.Shards {
			if s.Protocol != "h2c" {
				return fmt.Errorf("%s speaks %q, want h2c", s.Name, s.Protocol)
			}
		}
		return nil
	})
	cc, err := grpc.NewClient(strings.TrimPrefix(p.data, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	keys := sampleKeys(60)
	own := owners(t, 3, keys)
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-shard-key", k), 10*time.Second)
		var hdr metadata.MD
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr))
		if err != nil || resp.GetUsername() != own[k] || strings.Join(hdr.Get("x-shard"), ",") != own[k] {
			cancel()
			t.Fatalf("key %s: %v (x-shard %v), %v; want an answer from %s", k, resp, hdr.Get("x-shard"), err, own[k])
		}
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil || string(m.GetPayload().GetBody()) != own[k] {
			t.Fatalf("key %s stream: %v, %v; want %s", k, m, err, own[k])
		}
		_ = stream.CloseSend()
		cancel()
	}
	t.Logf("%d keys: unary and bidirectional calls reached their owners over h2c", len(keys))
}
