package upstream

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// oneBuffer is a sock.Buffer over one slice.
type oneBuffer struct{ b []byte }

func (o *oneBuffer) Take() []byte { return o.b }
func (o *oneBuffer) Give()        {}

// A request whose read deadline passed before WriteReadLean began (the
// goroutine was held up past the hot wait) is still written: the shard
// receives it, and the caller gets the deadline's error, as after a wait
// that found nothing, and waits on. Before, the write was skipped with the
// wait, and the request waited for an answer to a request never sent.
func TestWriteReadLeanWritesPastTheReadDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c := &Conn{NC: nc}
	if !c.lean.Init(nc) {
		t.Skip("no lean reads on this platform")
	}
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	_ = nc.SetReadDeadline(time.Now().Add(-time.Second))
	n, err := c.WriteReadLean(req, &oneBuffer{b: make([]byte, 64)}, time.Now().Add(5*time.Second))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteReadLean = %d, %v; want 0 and the read deadline's error", n, err)
	}
	got := make([]byte, len(req))
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != string(req) {
		t.Fatalf("the shard got %q (%v), want the request", got, err)
	}
}
