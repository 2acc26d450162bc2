package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Lean reads a plain socket into a Buffer taken only when the read does not
// block: a connection waiting for its peer's next bytes holds no buffer,
// and costs no system call more than a read would (the buffer is taken for
// the read and given back when it would block). Make one per connection
// (Init) and reuse it: Read does not allocate.
type Lean struct {
	raw  syscall.RawConn
	fn   func(uintptr) bool
	buf  Buffer
	n    int
	errn error
}

// Init prepares l to read nc and tells whether it can: false when nc is not
// a plain socket (TLS, for one), and the caller reads nc itself. It
// allocates twice (the raw connection and the read function).
func (l *Lean) Init(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	l.raw, l.fn = raw, l.read
	return true
}

// Ready tells whether Init succeeded.
func (l *Lean) Ready() bool { return l.raw != nil }

// Read reads once into b's buffer, waiting (with no buffer taken) until
// bytes or a close arrive or the socket's read deadline passes. It returns
// io.EOF when the peer closed, a *net.OpError for the deadline (what
// net.Conn.Read returns, with op "raw-read"), and an *os.SyscallError for
// a failed read (a reset, say). When it returns an error, b's buffer was
// given back unless the read itself failed.
func (l *Lean) Read(b Buffer) (int, error) {
	l.buf, l.n, l.errn = b, 0, nil
	err := l.raw.Read(l.fn)
	l.buf = nil
	switch {
	case err != nil:
		return 0, err
	case l.errn != nil:
		return 0, os.NewSyscallError("read", l.errn)
	case l.n == 0:
		return 0, io.EOF
	}
	return l.n, nil
}

// read is the raw read: false (wait) when nothing is there yet.
func (l *Lean) read(fd uintptr) bool {
	p := l.buf.Take()
	if len(p) == 0 {
		l.errn = errEmptyBuffer
		return true
	}
	for {
		n, err := syscall.Read(int(fd), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			l.buf.Give()
			return false
		case err != nil:
			l.errn = err
		default:
			l.n = n
		}
		return true
	}
}

var errEmptyBuffer = errors.New("lean read into an empty buffer")
