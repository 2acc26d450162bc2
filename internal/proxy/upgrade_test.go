package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// wsFrame writes one masked client frame (RFC 6455 §5.2) with a short
// payload.
func wsFrame(opcode byte, payload string) string {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b := []byte{0x80 | opcode, 0x80 | byte(len(payload))}
	b = append(b, mask[:]...)
	for i := range len(payload) {
		b = append(b, payload[i]^mask[i%4])
	}
	return string(b)
}

// readWSFrame reads one unmasked server frame.
func readWSFrame(br *bufio.Reader) (opcode byte, payload string, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, "", err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, "", err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		return 0, "", errors.New("frame too long for a test")
	}
	if h[1]&0x80 != 0 {
		return 0, "", errors.New("a server frame is masked")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return 0, "", err
	}
	return h[0] & 0x0f, string(b), nil
}

// A WebSocket upgrade is routed by key, the shard's 101 is relayed, frames
// flow both ways, and closing either side closes the other; the tunnels
// gauge counts the open tunnel.
func TestWebSocketTunnel(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	ended := make(chan string, 4) // shards whose WebSocket handler returned
	for _, s := range shards {
		name := s.Name
		chat := websocket.Server{Handler: func(ws *websocket.Conn) {
			// Greets, echoes, and hangs up itself on "bye".
			defer func() { ended <- name }()
			if err := websocket.Message.Send(ws, "hello from "+name); err != nil {
				return
			}
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				if msg == "bye" {
					ws.Close()
					return
				}
				if err := websocket.Message.Send(ws, name+" echoes "+msg); err != nil {
					return
				}
			}
		}}
		s.Handle(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/chat" {
				fmt.Fprint(w, "plain")
				return
			}
			chat.ServeHTTP(w, r)
		})
	}
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)

	open := func(t *testing.T) *rawClient {
		t.Helper()
		const key = "dGhlIHNhbXBsZSBub25jZQ=="
		rc := dialRaw(t, p)
		rc.send("GET /chat?room=1 HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://chat.example\r\nX-Shard-Key: 1\r\n\r\n")
		a := rc.response("GET")
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		if a.Status() != 101 || a.Get(header.Shard) != "web-1" || !a.connTokens("upgrade") ||
			a.Get("Upgrade") != "websocket" || a.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Fatalf("answer %q, want web-1's 101 with Upgrade, Connection: Upgrade and the right accept key", a.Raw())
		}
		if _, msg, err := readWSFrame(rc.br); err != nil || msg != "hello from web-1" {
			t.Fatalf("greeting %q (%v)", msg, err)
		}
		return rc
	}
	exchange := func(t *testing.T, rc *rawClient, msg string) {
		t.Helper()
		rc.send(wsFrame(1, msg))
		if _, got, err := readWSFrame(rc.br); err != nil || got != "web-1 echoes "+msg {
			t.Fatalf("echo %q (%v)", got, err)
		}
	}
	tunnels := func(want float64) func() bool {
		return func() bool { return p.tunnelsOpen("web-1") == want }
	}

	t.Run("client closes", func(t *testing.T) {
		rc := open(t)
		waitUntil(t, wireTimeout, "tunnels_open{shard=web-1} is 1", tunnels(1))
		exchange(t, rc, "one")
		exchange(t, rc, "two")
		rc.c.Close()
		// The shard's handler ends when it reads the end of the stream,
		// and the tunnel with it.
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the shard's WebSocket handler still runs 5s after the client closed")
		}
		waitUntil(t, 5*time.Second, "tunnels_open{shard=web-1} is back to 0", tunnels(0))
	})
	t.Run("shard closes", func(t *testing.T) {
		rc := open(t)
		waitUntil(t, wireTimeout, "tunnels_open{shard=web-1} is 1", tunnels(1))
		exchange(t, rc, "three")
		rc.send(wsFrame(1, "bye"))
		_ = rc.c.SetReadDeadline(time.Now().Add(time.Second))
		if b, err := io.ReadAll(rc.br); err != nil {
			t.Errorf("after the shard hung up: %v (read %q), want the end of the stream at once", err, b)
		}
		rc.c.Close()
		waitUntil(t, 5*time.Second, "tunnels_open{shard=web-1} is back to 0", tunnels(0))
		recv(t, ended)
	})
	if p.tunnelsOpen("web-0") != 0 {
		t.Errorf("tunnels_open{shard=web-0} = %v, want 0", p.tunnelsOpen("web-0"))
	}
	// An Upgrade field without "upgrade" in Connection is no upgrade: it is
	// hop-by-hop, dropped, and the request is an ordinary one.
	rc := dialRaw(t, p)
	a := rc.roundTrip("GET /plain HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Shard-Key: 0\r\n\r\n", "GET")
	if a.Status() != 200 {
		t.Errorf("answer %q", a.Raw())
	}
	for _, r := range shards[0].Requests() {
		if r.URI == "/plain" && r.Header.Get("Upgrade") != "" {
			t.Errorf("the shard got Upgrade %q without an upgrade", r.Header.Get("Upgrade"))
		}
	}
}
