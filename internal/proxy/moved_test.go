package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// startUpgradeShards starts raw servers that accept any upgrade with 101
// and then echo every byte: enough of a WebSocket shard to watch a tunnel.
func startUpgradeShards(t *testing.T, n int) watch.Topology {
	t.Helper()
	topo := watch.Topology{Replicas: n}
	for i := range n {
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("ws-%d", i), Addr: serveRaw(t, echoAfterUpgrade), Ready: true})
	}
	return topo
}

// serveRaw accepts connections on a loopback port until the test ends,
// each served by handle on its own goroutine; it returns the address.
func serveRaw(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

func echoAfterUpgrade(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		return
	}
	_, _ = io.Copy(c, br)
}

// wsTunnel opens an upgraded connection through the proxy for key.
func wsTunnel(t *testing.T, url, key string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Shard-Key: %s\r\n\r\n", key)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("key %s: upgrade answered %q, %v", key, status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c, br
		}
	}
}

// echoes sends msg as one WebSocket text frame and reads it back (the
// echo shard returns the frame as it came).
func echoes(c net.Conn, br *bufio.Reader, msg string) bool {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	frame := append([]byte{0x81, byte(len(msg))}, msg...)
	if _, err := c.Write(frame); err != nil {
		return false
	}
	got := make([]byte, len(frame))
	_, err := io.ReadFull(br, got)
	return err == nil && bytes.Equal(got, frame)
}

// TestRingChangeEndsMovedStreams: when the ring grows, WebSockets and gRPC
// streams of keys that moved are ended (close 1012, UNAVAILABLE), so their
// clients reconnect to the new owner; those of keys that stayed go on.
func TestRingChangeEndsMovedStreams(t *testing.T) {
	ws := startUpgradeShards(t, 3)
	_, gtopo := startGRPCShards(t, 3)
	for _, tt := range []struct {
		name string
		topo watch.Topology
	}{{"websocket", ws}, {"grpc", gtopo}} {
		t.Run(tt.name, func(t *testing.T) {
			two := watch.Topology{Replicas: 2, Shards: tt.topo.Shards[:2]}
			p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Jump}, &two)
			before := p.Table()
			keys := make([]string, 24)
			for i := range keys {
				keys[i] = fmt.Sprint("acct-", i)
			}
			check := openStreams(t, p.url, tt.name, keys)
			if err := p.Apply(tt.topo); err != nil {
				t.Fatal(err)
			}
			after := p.Table()
			moved := 0
			for i, key := range keys {
				was, _, _ := before.Owner([]byte(key))
				now, _, _ := after.Owner([]byte(key))
				if was.Name != now.Name {
					moved++
				}
				check[i](t, was.Name != now.Name)
			}
			if moved == 0 || moved == len(keys) {
				t.Fatalf("%d of %d keys moved; the test needs some of each", moved, len(keys))
			}
		})
	}
}

// openStreams opens one long-lived stream per key and returns, per key, a
// check that the stream was ended (moved) or still works (not moved).
func openStreams(t *testing.T, url, kind string, keys []string) []func(*testing.T, bool) {
	var checks []func(*testing.T, bool)
	var c testgrpc.TestServiceClient
	if kind == "grpc" {
		c = dialGRPC(t, url)
	}
	for _, key := range keys {
		if kind == "websocket" {
			conn, br := wsTunnel(t, url, key)
			if !echoes(conn, br, "hello") {
				t.Fatalf("key %s: tunnel does not echo", key)
			}
			checks = append(checks, func(t *testing.T, moved bool) {
				if !moved {
					if !echoes(conn, br, "still") {
						t.Errorf("key %s did not move, but its tunnel stopped working", key)
					}
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, _ := io.ReadAll(br)
				if !bytes.Equal(got, wsClose1012) {
					t.Errorf("key %s moved: tunnel ended with %x, want a close frame 1012 (%x) then EOF", key, got, wsClose1012)
				}
			})
			continue
		}
		stream, err := c.FullDuplexCall(withKey(key))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip := func() error {
			// Send reports a stream that ended with io.EOF; its status
			// is what Recv then returns (grpc-go's contract).
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil && err != io.EOF {
				return err
			}
			_, err := stream.Recv()
			return err
		}
		if err := roundTrip(); err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
		checks = append(checks, func(t *testing.T, moved bool) {
			err := roundTrip()
			switch {
			case moved && status.Code(err) != codes.Unavailable:
				t.Errorf("key %s moved: stream gave %v, want UNAVAILABLE", key, err)
			case !moved && err != nil:
				t.Errorf("key %s did not move, but its stream failed: %v", key, err)
			}
		})
	}
	return checks
}

// TestMovedWebSocketClosesBetweenFrames: when a key moves while its shard
// is in the middle of a WebSocket frame, the frame is finished before the
// close frame 1012 (never cut by it); a frame that does not finish in
// time ends the connection without a close frame in its middle.
func TestMovedWebSocketClosesBetweenFrames(t *testing.T) {
	small := []byte{0x82, 0x03, 'a', 'b', 'c'} // binary frame, 3 bytes
	bigHead := []byte{0x82, 0x7e, 0x03, 0xe8}  // binary frame, 1000 bytes
	payload := bytes.Repeat([]byte{'p'}, 1000)
	next := []byte{0x81, 0x05, 'l', 'a', 't', 'e', 'r'} // must not reach the client
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprint("finishes=", finish), func(t *testing.T) {
			rest := make(chan struct{})
			topo := watch.Topology{Replicas: 2}
			shard := func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for line, err := br.ReadString('\n'); err == nil && line != "\r\n"; line, err = br.ReadString('\n') {
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				_, _ = c.Write(append(append(append([]byte(nil), small...), bigHead...), payload[:500]...))
				<-rest
				if finish {
					_, _ = c.Write(append(append([]byte(nil), payload[500:]...), next...))
				}
				_, _ = io.Copy(io.Discard, c)
			}
			for i := range 3 {
				topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("ws-%d", i), Addr: serveRaw(t, shard), Ready: true})
			}
			grown := topo
			grown.Replicas = 3
			two, _ := table.Build(ring.Config{}, topo, nil)
			three, _ := table.Build(ring.Config{}, grown, nil)
			key := ""
			for i := 0; key == ""; i++ {
				k := fmt.Sprint("acct-", i)
				if a, _, _ := two.Owner([]byte(k)); a.Name != func() string { b, _, _ := three.Owner([]byte(k)); return b.Name }() {
					key = k
				}
			}
			p := startProxy(t, Config{}, ring.Config{}, &topo)
			c, br := wsTunnel(t, p.url, key)
			got := make([]byte, len(small)+len(bigHead)+500)
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatal(err)
			}
			if err := p.Apply(grown); err != nil { // the key moves, mid-frame
				t.Fatal(err)
			}
			close(rest)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			tail, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			want := []byte{}
			if finish {
				want = append(append(want, payload[500:]...), wsClose1012...)
			}
			if !bytes.Equal(tail, want) {
				t.Errorf("after the move the client got %q, want %q", tail, want)
			}
		})
	}
}

// wsClose1012 is an unmasked WebSocket close frame (RFC 6455 §5.5.1) with
// status 1012, service restart: what a moved tunnel's client receives.
var wsClose1012 = []byte{0x88, 0x02, 0x03, 0xF4}
