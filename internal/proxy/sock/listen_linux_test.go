package sock

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A connection is handed to accept once its first bytes arrived; one that
// sends nothing still is, about a second later (it is not lost).
func TestListenDefersAccept(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = tl.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if a, err := tl.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		if a != nil {
			a.Close()
		}
		t.Fatalf("accepted before any byte arrived (err %v)", err)
	}
	if _, err := c.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	_ = tl.SetDeadline(time.Now().Add(5 * time.Second))
	a, err := tl.Accept()
	if err != nil {
		t.Fatalf("not accepted once its first byte came: %v", err)
	}
	defer a.Close()
	b := make([]byte, 1)
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := a.Read(b); n != 1 || b[0] != 'G' {
		t.Fatalf("read %q, %v", b[:n], err)
	}

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = tl.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	s, err := tl.Accept()
	if err != nil {
		t.Fatalf("a connection that sends nothing is never accepted: %v", err)
	}
	s.Close()
	t.Logf("a silent connection was accepted after %v", time.Since(start).Round(time.Millisecond))
}
