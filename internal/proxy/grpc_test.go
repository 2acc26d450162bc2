package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// grpcShard is a real grpc-go server that names itself in every answer.
type grpcShard struct {
	testgrpc.UnimplementedTestServiceServer
	name string
	addr string
	// started receives the context of every call, so tests can watch it.
	started chan context.Context
}

func (s *grpcShard) payload() *testgrpc.Payload { return &testgrpc.Payload{Body: []byte(s.name)} }

func (s *grpcShard) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.note(ctx)
	if req.GetResponseStatus() != nil {
		return nil, status.Error(codes.Code(req.GetResponseStatus().GetCode()), req.GetResponseStatus().GetMessage())
	}
	if d := req.GetResponseSize(); d > 0 { // a slow call: ResponseSize milliseconds
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &testgrpc.SimpleResponse{Payload: s.payload(), Username: s.name}, nil
}

func (s *grpcShard) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	s.note(stream.Context())
	for range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: s.payload()}); err != nil {
			return err
		}
	}
	return nil
}

func (s *grpcShard) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	s.note(stream.Context())
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("served-by", s.name))
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (s *grpcShard) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	s.note(stream.Context())
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

func (s *grpcShard) note(ctx context.Context) {
	select {
	case s.started <- ctx:
	default:
	}
}

func startGRPCShards(t testing.TB, n int, opts ...grpc.ServerOption) ([]*grpcShard, watch.Topology) {
	t.Helper()
	topo := watch.Topology{Replicas: n}
	var shards []*grpcShard
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &grpcShard{name: fmt.Sprintf("g-%d", i), addr: ln.Addr().String(), started: make(chan context.Context, 64)}
		srv := grpc.NewServer(opts...)
		testgrpc.RegisterTestServiceServer(srv, s)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		shards = append(shards, s)
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: s.name, Addr: s.addr, Ready: true, Protocol: watch.H2C})
	}
	return shards, topo
}

func dialGRPC(t testing.TB, url string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(url[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-shard-key", key)
}

// TestGRPCCallKinds: unary, server-, client- and bidirectional streaming
// calls go through one client connection, each to its key's owner, with
// x-shard on the answer and trailers relayed.
func TestGRPCCallKinds(t *testing.T) {
	shards, topo := startGRPCShards(t, 3)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialGRPC(t, p.url)
	for k := range 6 { // many keys on one connection
		key := strconv.Itoa(k)
		want := shards[k%3].name
		var hdr, trl metadata.MD
		resp, err := c.UnaryCall(withKey(key), &testgrpc.SimpleRequest{}, grpc.Header(&hdr))
		if err != nil || resp.GetUsername() != want {
			t.Fatalf("key %s unary: %v, %v; want an answer from %s", key, resp, err, want)
		}
		if got := hdr.Get("x-shard"); len(got) != 1 || got[0] != want {
			t.Errorf("key %s unary: x-shard %v, want %s", key, got, want)
		}

		ss, err := c.StreamingOutputCall(withKey(key), &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: make([]*testgrpc.ResponseParameters, 3)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			m, err := ss.Recv()
			if i == 3 {
				if err != io.EOF {
					t.Fatalf("server stream: after 3 messages %v, want EOF", err)
				}
				break
			}
			if err != nil || string(m.GetPayload().GetBody()) != want {
				t.Fatalf("server stream message %d: %v, %v", i, m, err)
			}
		}

		cs, err := c.StreamingInputCall(withKey(key), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := cs.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 100)}}); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := cs.CloseAndRecv()
		if err != nil || sum.GetAggregatedPayloadSize() != 500 {
			t.Fatalf("client stream: %v, %v; want 500 bytes counted", sum, err)
		}
		if got := trl.Get("served-by"); len(got) != 1 || got[0] != want {
			t.Errorf("client stream trailer served-by %v, want %s (trailers relayed)", got, want)
		}

		bidi, err := c.FullDuplexCall(withKey(key))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 { // each answer comes before the next message is sent
			msg := fmt.Sprint("m", i)
			if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
				t.Fatal(err)
			}
			m, err := bidi.Recv()
			if err != nil || string(m.GetPayload().GetBody()) != want+":"+msg {
				t.Fatalf("bidi message %d: %v, %v", i, m, err)
			}
		}
		if err := bidi.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != io.EOF {
			t.Fatalf("bidi end: %v, want EOF", err)
		}
	}
}

// TestGRPCErrors: errors the proxy produces for gRPC calls are gRPC
// statuses, and the shard's own statuses pass through.
func TestGRPCErrors(t *testing.T) {
	shards, topo := startGRPCShards(t, 3)
	topo.Shards[1].Ready = false
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	topo.Shards[2].Addr = dead.Addr().String()
	dead.Close()
	p := startProxy(t, Config{UpstreamTimeout: 300 * time.Millisecond}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialGRPC(t, p.url)
	tests := []struct {
		name      string
		ctx       context.Context
		req       *testgrpc.SimpleRequest
		want      codes.Code
		wantShard string
	}{
		{"no key", context.Background(), &testgrpc.SimpleRequest{}, codes.InvalidArgument, ""},
		{"ambiguous key", metadata.AppendToOutgoingContext(context.Background(), "x-shard-key", "0", "x-shard-key", "3"),
			&testgrpc.SimpleRequest{}, codes.InvalidArgument, ""},
		{"owner not ready", withKey("1"), &testgrpc.SimpleRequest{}, codes.Unavailable, "g-1"},
		{"owner unreachable", withKey("2"), &testgrpc.SimpleRequest{}, codes.Unavailable, "g-2"},
		{"owner too slow", withKey("0"), &testgrpc.SimpleRequest{ResponseSize: 5000}, codes.DeadlineExceeded, "g-0"},
		{"shard's own status", withKey("0"), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such account"}},
			codes.NotFound, "g-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr, trl metadata.MD
			_, err := c.UnaryCall(tt.ctx, tt.req, grpc.Header(&hdr), grpc.Trailer(&trl))
			if got := status.Code(err); got != tt.want {
				t.Fatalf("status %v (%v), want %v", got, err, tt.want)
			}
			shard := append(hdr.Get("x-shard"), trl.Get("x-shard")...)
			if tt.wantShard == "" && len(shard) > 0 || tt.wantShard != "" && (len(shard) == 0 || shard[0] != tt.wantShard) {
				t.Errorf("x-shard %v, want %q", shard, tt.wantShard)
			}
		})
	}
	_ = shards
	// Each call counted once, for its shard, with the HTTP status the
	// proxy stands for (a gRPC status of the shard's own is a 200). A
	// stream's record ends once its connection is unlocked, which may be
	// just after the client has its answer: the counts are awaited.
	for _, m := range []struct {
		shard, code string
		want        float64
	}{{"g-0", "200", 1}, {"g-0", "504", 1}, {"g-1", "503", 1}, {"g-2", "502", 1}} {
		count := func() float64 {
			return p.metric("shard_proxy_requests_total", "shard", m.shard, "code", m.code, "protocol", "h2")
		}
		eventually(t, "the call counted", func() bool { return count() >= m.want })
		if got := count(); got != m.want {
			t.Errorf(`requests_total{shard=%q,code=%q,protocol="h2"} = %v, want %v`, m.shard, m.code, got, m.want)
		}
	}
	for _, reason := range []string{"no_key", "ambiguous"} {
		if got := p.metric("shard_proxy_key_errors_total", "reason", reason); got != 1 {
			t.Errorf("key_errors_total{reason=%s} = %v, want 1", reason, got)
		}
	}
}

// TestGRPCTimeoutAndCancel: grpc-timeout reaches the shard as a deadline,
// and a client that cancels cancels the shard's call.
func TestGRPCTimeoutAndCancel(t *testing.T) {
	shards, topo := startGRPCShards(t, 1)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialGRPC(t, p.url)

	ctx, cancel := context.WithTimeout(withKey("k"), 2*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	shardCtx := <-shards[0].started
	if dl, ok := shardCtx.Deadline(); !ok || time.Until(dl) > 2*time.Second {
		t.Errorf("shard's deadline %v (set %v), want one within 2s from grpc-timeout", dl, ok)
	}

	ctx, cancel = context.WithCancel(withKey("k"))
	errc := make(chan error, 1)
	go func() {
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 20000})
		errc <- err
	}()
	shardCtx = <-shards[0].started
	cancel()
	select {
	case <-shardCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the shard's call was not cancelled within 5s of the client's cancel")
	}
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Errorf("client saw %v, want Canceled", err)
	}
	_ = errors.New
}

// TestGRPCShardDownMidStream: a shard that goes away while a bidi stream
// is open ends the stream with UNAVAILABLE (not a clean end), and the
// next call to it gets UNAVAILABLE with x-shard; another shard's stream
// on the same client connection is untouched.
func TestGRPCShardDownMidStream(t *testing.T) {
	shards, topo := startGRPCShards(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	doomed := &grpcShard{name: "g-doomed", addr: ln.Addr().String(), started: make(chan context.Context, 64)}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, doomed)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	topo.Replicas = 2
	topo.Shards = append(topo.Shards, watch.Shard{Ordinal: 1, Name: doomed.name, Addr: doomed.addr, Ready: true, Protocol: watch.H2C})
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialGRPC(t, p.url)

	open := func(key string) testgrpc.TestService_FullDuplexCallClient {
		s, err := c.FullDuplexCall(withKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
		return s
	}
	survivor, victim := open("0"), open("1") // modulus: g-0 and g-doomed
	srv.Stop()
	if _, err := victim.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the stream whose shard went away: %v, want UNAVAILABLE", err)
	}
	if err := survivor.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	if m, err := survivor.Recv(); err != nil || string(m.GetPayload().GetBody()) != shards[0].name+":y" {
		t.Errorf("the other shard's stream: %v, %v", m, err)
	}
	var hdr, trl metadata.MD
	_, err = c.UnaryCall(withKey("1"), &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if status.Code(err) != codes.Unavailable || len(append(hdr.Get("x-shard"), trl.Get("x-shard")...)) == 0 {
		t.Errorf("a call to the shard that is gone: %v (x-shard %v %v), want UNAVAILABLE with x-shard", err, hdr.Get("x-shard"), trl.Get("x-shard"))
	}
}
