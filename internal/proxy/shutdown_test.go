package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Shutdown: the answer in flight says Connection: close; requests already
// written on idle keep-alive connections (parked or not) are answered, not
// lost; idle connections close; new connections are refused.
func TestShutdownGraceful(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	slow, arrived := newGate(), make(chan struct{}, 1)
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-slow.wait()
		}
		fmt.Fprint(w, "answer for "+r.URL.Path)
	})
	slow.openAtEnd(t)
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{}, &topo)

	get := func(rc *rawClient, path string) {
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
	}
	answered := func(t *testing.T, rc *rawClient, path string) rawMsg {
		t.Helper()
		a := rc.response("GET")
		if a.Status() != 200 || string(a.Payload) != "answer for "+path {
			t.Errorf("%s: answer %q, want 200 %q", path, a.Raw(), "answer for "+path)
		}
		return a
	}
	saysClose := func(t *testing.T, a rawMsg, want bool) {
		t.Helper()
		if a.connTokens("close") != want {
			t.Errorf("answer %q, want Connection: close %v", a.Head, want)
		}
	}
	// idle and parked: kept-alive connections past their first request;
	// parked ones have been idle long enough to hold nothing.
	parked, parkedWriter := dialRaw(t, p), dialRaw(t, p)
	for _, rc := range []*rawClient{parked, parkedWriter} {
		get(rc, "/first")
		saysClose(t, answered(t, rc, "/first"), false)
	}
	waitUntil(t, wireTimeout, "two connections are parked", func() bool { return p.inspectParked(t, nil) == 2 })
	idle, hotWriter := dialRaw(t, p), dialRaw(t, p)
	for _, rc := range []*rawClient{idle, hotWriter} {
		get(rc, "/first")
		saysClose(t, answered(t, rc, "/first"), false)
	}
	inFlight := dialRaw(t, p)
	get(inFlight, "/slow")
	recv(t, arrived)

	// Written just before Shutdown: on the wire, not yet read.
	get(parkedWriter, "/late/parked")
	get(hotWriter, "/late/hot")
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(context.Background()) }()

	// Served before or after draining began, whichever came first (so
	// with or without Connection: close); either way answered, then closed.
	answered(t, parkedWriter, "/late/parked")
	parkedWriter.closed()
	answered(t, hotWriter, "/late/hot")
	hotWriter.closed()
	idle.closed()
	parked.closed()
	waitUntil(t, wireTimeout, "new connections are refused", func() bool {
		c, err := net.Dial("tcp", p.rawAddr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	slow.open()
	saysClose(t, answered(t, inFlight, "/slow"), true)
	inFlight.closed()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(wireTimeout):
		t.Fatal("Shutdown did not return once the last request was answered")
	}
}

// TestShutdownRelayedHTTP2: on Shutdown a relayed HTTP/2 connection gets
// GOAWAY; the call in flight finishes and is answered, new calls are
// refused, and Shutdown returns once the connection closed.
func TestShutdownRelayedHTTP2(t *testing.T) {
	shards, topo := startGRPCShards(t, 1)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialGRPC(t, p.url)
	if _, err := c.UnaryCall(withKey("warm"), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	<-shards[0].started
	slow := make(chan error, 1)
	go func() {
		_, err := c.UnaryCall(withKey("slow"), &testgrpc.SimpleRequest{ResponseSize: 300}) // 300 ms at the shard
		slow <- err
	}()
	<-shards[0].started // in flight at the shard
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(context.Background()) }()
	if err := <-slow; err != nil {
		t.Errorf("the call in flight: %v, want it answered", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return within 5s of the last call")
	}
	ctx, cancel := context.WithTimeout(withKey("late"), 2*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a call after Shutdown: %v, want UNAVAILABLE", err)
	}
}
