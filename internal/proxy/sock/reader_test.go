package sock

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}

// TestReaderReadsWhatWasSent sends random bytes in random pieces, after a
// pending prefix, and reads them back through a Reader in random sizes
// (some larger than its buffer), over a plain socket (lean reads) and a
// pipe (no raw socket: the buffer is taken for each read). Whenever it
// has nothing unread, it holds no buffer.
func TestReaderReadsWhatWasSent(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, kind := range []string{"tcp", "pipe"} {
		t.Run(kind, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			var ours, theirs net.Conn
			if kind == "tcp" {
				ours, theirs = tcpPair(t)
			} else {
				ours, theirs = net.Pipe()
				t.Cleanup(func() { ours.Close(); theirs.Close() })
			}
			pending := []byte("PRI * HTTP/2.0")
			rd := NewReader(ours, pending, NewReadBuffers(64))
			if kind == "tcp" && !rd.lean.Ready() {
				t.Fatal("a TCP socket was not read lean")
			}
			want := make([]byte, 20000)
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			sizes := make([]int, 0, 200)
			for rest := len(want); rest > 0; {
				n := min(rest, 1+rng.IntN(300))
				sizes = append(sizes, n)
				rest -= n
			}
			go func() {
				rest := want
				for _, n := range sizes {
					if _, err := theirs.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
			}()
			got := make([]byte, 0, len(want)+len(pending))
			p := make([]byte, 200)
			for len(got) < len(want)+len(pending) {
				if rd.Buffered() == 0 && rd.Holding() {
					t.Fatalf("the Reader holds a buffer with nothing unread")
				}
				n, err := rd.Read(p[:1+rng.IntN(len(p))])
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				got = append(got, p[:n]...)
			}
			if !bytes.Equal(got[:len(pending)], pending) || !bytes.Equal(got[len(pending):], want) {
				t.Fatal("the bytes read differ from the pending prefix and the bytes sent")
			}
		})
	}
}

// TestReaderEndsAndDeadlines: a close reads as io.EOF, a passed deadline
// as the deadline's error, and neither leaves a buffer held.
func TestReaderEndsAndDeadlines(t *testing.T) {
	ours, theirs := tcpPair(t)
	rd := NewReader(ours, nil, NewReadBuffers(64))
	_ = ours.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want the deadline's error", err)
	}
	if rd.Holding() {
		t.Fatal("a Reader past its deadline holds a buffer")
	}
	_ = ours.SetReadDeadline(time.Time{})
	if _, err := theirs.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != "last" {
		t.Fatalf("read %q, %v; want \"last\" then EOF", got, err)
	}
	if rd.Holding() {
		t.Fatal("a Reader at EOF holds a buffer")
	}
}
