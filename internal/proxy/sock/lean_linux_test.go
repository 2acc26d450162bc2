package sock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// countedBuffer is a Buffer that counts how often it is taken and given
// back.
type countedBuffer struct {
	buf          []byte
	takes, gives int
}

func (b *countedBuffer) Take() []byte { b.takes++; return b.buf }
func (b *countedBuffer) Give()        { b.gives++ }

// leanPair returns a connected client (with its Lean) and server socket.
func leanPair(t *testing.T) (*net.TCPConn, *Lean, *net.TCPConn) {
	t.Helper()
	c, s := tcpPair(t)
	var l Lean
	if !l.Init(c) {
		t.Fatal("Init refused a plain TCP connection")
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn), &l, s.(*net.TCPConn)
}

// WriteRead writes the request, then waits for the answer without a read
// that finds nothing: the buffer is taken once, when the answer is there,
// and never given back.
func TestLeanWriteReadWaitsWithoutReading(t *testing.T) {
	_, l, s := leanPair(t)
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	type result struct {
		n    int
		rest []byte
		err  error
	}
	b := &countedBuffer{buf: make([]byte, 64)}
	done := make(chan result, 1)
	go func() {
		n, rest, err := l.WriteRead(req, b)
		done <- result{n, rest, err}
	}()
	got := make([]byte, len(req))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, req) {
		t.Fatalf("the peer got %q (%v), want %q", got, err, req)
	}
	select {
	case r := <-done:
		t.Fatalf("WriteRead returned %d %q %v before any answer", r.n, r.rest, r.err)
	default:
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if _, err := s.Write(answer); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.rest) != 0 || !bytes.Equal(b.buf[:r.n], answer) {
		t.Fatalf("WriteRead = %d %q %v, read %q; want the answer", r.n, r.rest, r.err, b.buf[:r.n])
	}
	if b.takes != 1 || b.gives != 0 {
		t.Fatalf("the buffer was taken %d times and given back %d times, want taken once, never given back", b.takes, b.gives)
	}
}

// A peer that closes without answering ends WriteRead with io.EOF and
// nothing read.
func TestLeanWriteReadPeerCloses(t *testing.T) {
	_, l, s := leanPair(t)
	go func() {
		_, _ = s.Read(make([]byte, 64))
		s.Close()
	}()
	b := &countedBuffer{buf: make([]byte, 64)}
	n, rest, err := l.WriteRead([]byte("GET / HTTP/1.1\r\n\r\n"), b)
	if n != 0 || len(rest) != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("WriteRead = %d %q %v, want 0, nothing left, io.EOF", n, rest, err)
	}
}

// A request the socket cannot take at once comes back, what is left of
// it, for the caller to write waiting; nothing is read, no buffer taken.
func TestLeanWriteReadReturnsWhatItCannotWrite(t *testing.T) {
	c, l, s := leanPair(t)
	_ = c.SetWriteBuffer(4 << 10)
	_ = s.SetReadBuffer(4 << 10)
	req := bytes.Repeat([]byte("x"), 16<<20) // the peer reads none of it
	b := &countedBuffer{buf: make([]byte, 64)}
	n, rest, err := l.WriteRead(req, b)
	if err != nil || n != 0 || len(rest) == 0 || len(rest) == len(req) {
		t.Fatalf("WriteRead = %d, %d of %d bytes left, %v; want part written, the rest returned", n, len(rest), len(req), err)
	}
	if b.takes != 0 {
		t.Fatalf("the buffer was taken %d times, want never", b.takes)
	}
}

// Write sends all of a body larger than the socket's buffers, waiting
// while the peer reads slowly, beside a Read of the same Lean on another
// goroutine (a request body streaming in while its answer goes out).
func TestLeanWriteBesideRead(t *testing.T) {
	c, l, s := leanPair(t)
	_ = c.SetWriteBuffer(4 << 10)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(s, int64(len(body))))
		got <- b
		_, _ = s.Write([]byte("bye"))
	}()
	read := make(chan string, 1)
	go func() {
		b := &countedBuffer{buf: make([]byte, 16)}
		n, err := l.Read(b)
		read <- fmt.Sprintf("%q %v", b.buf[:n], err)
	}()
	if n, err := l.Write(body); n != len(body) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(body))
	}
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("the peer got %d bytes, not the %d written", len(b), len(body))
	}
	if r := <-read; r != `"bye" <nil>` {
		t.Fatalf("the Read beside the Write got %s, want \"bye\"", r)
	}
}

// Write to a peer that never reads stops at the write deadline with what
// it wrote; to a peer that left, it fails (EPIPE or a reset), and the
// process gets no SIGPIPE.
func TestLeanWriteDeadlineAndGonePeer(t *testing.T) {
	c, l, s := leanPair(t)
	_ = c.SetWriteBuffer(4 << 10)
	_ = s.SetReadBuffer(4 << 10)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	big := make([]byte, 16<<20)
	n, err := l.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == len(big) {
		t.Fatalf("Write to a peer that reads nothing = %d of %d, %v; want part, then the deadline", n, len(big), err)
	}
	c2, l2, s2 := leanPair(t)
	s2.Close()
	_ = c2.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var werr error
	for i := 0; i < 100 && werr == nil; i++ { // the first write may still be taken; the reset then fails the next
		_, werr = l2.Write([]byte("after the peer left"))
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("Write to a peer that left: %v, want EPIPE or ECONNRESET", werr)
	}
}
