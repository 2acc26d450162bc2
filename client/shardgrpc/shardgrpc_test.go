package shardgrpc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/client/shardgrpc"
	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

// pod is a real grpc-go server that names itself in every answer and
// counts its calls.
type pod struct {
	testgrpc.UnimplementedTestServiceServer
	name  string
	addr  string
	calls atomic.Int64
	srv   *grpc.Server
}

func (s *pod) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.calls.Add(1)
	return &testgrpc.SimpleResponse{Username: s.name}, nil
}

func (s *pod) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(s.name)}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *pod) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	s.calls.Add(1)
	for {
		if _, err := stream.Recv(); err == io.EOF {
			stream.SetTrailer(metadata.Pairs("served-by", s.name))
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{})
		} else if err != nil {
			return err
		}
	}
}

func (s *pod) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		body := append([]byte(s.name+":"), req.GetPayload().GetBody()...)
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

func startPods(t *testing.T, from, n int) []*pod {
	t.Helper()
	var pods []*pod
	for i := from; i < from+n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := &pod{name: fmt.Sprintf("web-%d", i), addr: ln.Addr().String(), srv: grpc.NewServer()}
		testgrpc.RegisterTestServiceServer(p.srv, p)
		go func() { _ = p.srv.Serve(ln) }()
		t.Cleanup(p.srv.Stop)
		pods = append(pods, p)
	}
	return pods
}

func topologyOf(pods []*pod) watch.Topology {
	topo := watch.Topology{Replicas: len(pods)}
	for i, p := range pods {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: p.name, Addr: p.addr, Ready: true, Protocol: watch.H2C})
	}
	return topo
}

// rig: the proxy's routing table and admin plane (the topology source),
// a client following it, and a gRPC connection through the balancer.
type rig struct {
	px   *proxy.Proxy
	pods []*pod
	c    *client.Client
	api  testgrpc.TestServiceClient
}

func startRig(t *testing.T, n int, cfg client.Config) *rig {
	t.Helper()
	px, err := proxy.New(proxy.Config{Ring: ring.Config{Algorithm: ring.Jump}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	r := &rig{px: px, pods: startPods(t, 0, n)}
	r.apply(t, topologyOf(r.pods))
	srv := admin.New(admin.Config{Tables: px})
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	r.c, err = client.New(ctx, hs.URL, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cc, err := shardgrpc.NewClient(r.c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		<-r.c.Done()
	})
	r.api = testgrpc.NewTestServiceClient(cc)
	return r
}

func (r *rig) apply(t *testing.T, topo watch.Topology) {
	t.Helper()
	if err := r.px.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

// follow waits until the client routes by the proxy's table in force.
func (r *rig) follow(t *testing.T) {
	t.Helper()
	_, gen, _ := r.px.Current()
	deadline := time.After(5 * time.Second)
	for {
		ch := r.c.Changed()
		if r.c.Topology().Generation >= gen {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("the client did not reach generation %d", gen)
		}
	}
}

func withKey(key string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	return metadata.AppendToOutgoingContext(ctx, shardgrpc.MetadataKey, key), cancel
}

func owner(t *testing.T, c *client.Client, key string) string {
	t.Helper()
	sh, err := c.Owner(key)
	if err != nil {
		t.Fatal(err)
	}
	return sh.Name
}

// callAll makes the four kinds of call with key and returns who served
// each.
func callAll(t *testing.T, api testgrpc.TestServiceClient, key string) [4]string {
	t.Helper()
	ctx, cancel := withKey(key)
	defer cancel()
	var got [4]string
	u, err := api.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		t.Fatalf("unary %s: %v", key, err)
	}
	got[0] = u.GetUsername()

	ss, err := api.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{}, {}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := ss.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("server streaming %s: %v", key, err)
		}
		got[1] = string(m.GetPayload().GetBody())
	}

	cs, err := api.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := cs.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CloseAndRecv(); err != nil {
		t.Fatalf("client streaming %s: %v", key, err)
	}
	got[2] = strings.Join(cs.Trailer().Get("served-by"), ",")

	bs, err := api.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	m, err := bs.Recv()
	if err != nil {
		t.Fatalf("bidi %s: %v", key, err)
	}
	got[3], _, _ = strings.Cut(string(m.GetPayload().GetBody()), ":")
	_ = bs.CloseSend()
	return got
}

// TestFourCallKindsReachTheOwner: unary, server, client and bidi
// streaming calls each reach the key's owner, before and after a scale.
func TestFourCallKindsReachTheOwner(t *testing.T) {
	r := startRig(t, 3, client.Config{})
	check := func() {
		for i := range 40 {
			key := fmt.Sprintf("acct-%d", i)
			want := owner(t, r.c, key)
			if got := callAll(t, r.api, key); got != [4]string{want, want, want, want} {
				t.Fatalf("key %s: served by %v, want %s for all four", key, got, want)
			}
		}
	}
	check()
	topo := topologyOf(append(r.pods, startPods(t, 3, 2)...))
	r.apply(t, topo)
	r.follow(t)
	check()
}

// TestOwnerDown: a not-ready owner is waited for up to OwnerWait, then
// UNAVAILABLE; a dead pod is UNAVAILABLE; no call reaches another pod.
func TestOwnerDown(t *testing.T) {
	r := startRig(t, 3, client.Config{OwnerWait: 300 * time.Millisecond})
	key := "k-1"
	own := owner(t, r.c, key)
	var ownPod *pod
	topo := topologyOf(r.pods)
	for i, p := range r.pods {
		if p.name == own {
			ownPod = p
			topo.Shards[i].Ready = false
		}
	}
	r.apply(t, topo)
	r.follow(t)
	ctx, cancel := withKey(key)
	defer cancel()
	start := time.Now()
	_, err := r.api.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.Unavailable || time.Since(start) < 300*time.Millisecond || !strings.Contains(err.Error(), "shard not ready") {
		t.Fatalf("owner not ready: %v after %v, want UNAVAILABLE shard not ready after the owner-wait", err, time.Since(start))
	}

	// The owner comes back while a call waits: it goes there.
	done := make(chan error, 1)
	go func() {
		_, err := r.api.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		done <- err
	}()
	for i := range topo.Shards {
		topo.Shards[i].Ready = true
	}
	r.apply(t, topo)
	if err := <-done; err != nil {
		t.Fatalf("the held call: %v", err)
	}
	if n := ownPod.calls.Load(); n != 1 {
		t.Fatalf("%s served %d calls, want 1", own, n)
	}

	// A pod that is down while the topology says ready: UNAVAILABLE.
	ownPod.srv.Stop()
	_, err = r.api.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("owner pod stopped: %v, want UNAVAILABLE", err)
	}
	for _, p := range r.pods {
		if p != ownPod && p.calls.Load() != 0 {
			t.Errorf("%s served %d calls for a key it does not own", p.name, p.calls.Load())
		}
	}
}

func TestKeyMetadata(t *testing.T) {
	r := startRig(t, 2, client.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.api.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no key: %v, want INVALID_ARGUMENT", err)
	}
	two := metadata.AppendToOutgoingContext(ctx, shardgrpc.MetadataKey, "1", shardgrpc.MetadataKey, "2")
	if _, err := r.api.UnaryCall(two, &testgrpc.SimpleRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("two keys: %v, want INVALID_ARGUMENT", err)
	}
}
