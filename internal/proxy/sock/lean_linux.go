package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Lean reads a plain socket into a Buffer taken only when the read does not
// block: a connection waiting for its peer's next bytes holds no buffer,
// and costs no system call more than a read would (the buffer is taken for
// the read and given back when it would block). Make one per connection
// (Init) and reuse it: Read does not allocate.
type Lean struct {
	raw  syscall.RawConn
	fn   func(uintptr) bool
	fnw  func(uintptr) bool
	fno  func(uintptr) bool
	buf  Buffer
	n    int
	errn error
	out  []byte // what WriteRead still has to write
	// What Write still has to write, and its error: Write may run while
	// another goroutine reads (a body streams in as its answer goes out).
	wout  []byte
	werrn error
}

// Init prepares l to read nc and tells whether it can: false when nc is not
// a plain socket (TLS, for one), and the caller reads nc itself.
func (l *Lean) Init(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	l.raw, l.fn, l.fnw, l.fno = raw, l.read, l.writeRead, l.write
	return true
}

// Ready tells whether Init succeeded.
func (l *Lean) Ready() bool { return l.raw != nil }

// Read reads once into b's buffer, waiting (with no buffer taken) until
// bytes or a close arrive or the socket's read deadline passes. It returns
// io.EOF when the peer closed, and the deadline error as net.Conn.Read
// would.
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

// WriteRead writes p, then reads as Read does; the wait for the answer
// begins straight after the write, with no read that finds nothing (the
// peer has not answered yet: its readiness is awaited first). When the
// socket takes only part of p (its buffer is full), it returns what is
// left unwritten, nothing read, and the caller writes the rest and reads
// itself. A write error is returned as such. When the read deadline has
// passed already, the wait ends before the write: the deadline's error
// comes back with all of p unwritten.
func (l *Lean) WriteRead(p []byte, b Buffer) (n int, rest []byte, err error) {
	l.out, l.buf, l.n, l.errn = p, b, 0, nil
	err = l.raw.Read(l.fnw)
	rest, l.out, l.buf = l.out, nil, nil
	switch {
	case err != nil:
		return 0, rest, err
	case l.errn != nil:
		return 0, rest, os.NewSyscallError("readwrite", l.errn)
	case len(rest) > 0:
		return 0, rest, nil
	case l.n == 0:
		return 0, nil, io.EOF
	}
	return l.n, nil, nil
}

// Write writes all of p, waiting through Go's poller while the socket's
// buffer is full, until the socket's write deadline; it returns how much
// was written. One Write may run beside one Read or WriteRead (Go's
// poller allows a reader and a writer at once), not beside another Write.
func (l *Lean) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	l.wout, l.werrn = p, nil
	err := l.raw.Write(l.fno)
	n := len(p) - len(l.wout)
	l.wout = nil
	if err == nil && l.werrn != nil {
		err = os.NewSyscallError("write", l.werrn)
	}
	return n, err
}

// write is the raw write: false (wait) when the socket takes no more.
func (l *Lean) write(fd uintptr) bool {
	for len(l.wout) > 0 {
		n, err := rawWrite(fd, l.wout)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			l.werrn = err
			return true
		}
		l.wout = l.wout[n:]
	}
	return true
}

// writeRead writes what is left to write on the first call, then reads.
// Go's poller forgets the socket's readiness before the first call, so
// an answer arriving after the write always wakes the wait.
func (l *Lean) writeRead(fd uintptr) bool {
	if len(l.out) == 0 {
		return l.read(fd)
	}
	for {
		n, err := rawWrite(fd, l.out)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true // the caller writes the rest, waiting
		case err != nil:
			l.errn = err
			return true
		}
		l.out = l.out[n:]
		return len(l.out) > 0 // all written: wait for the answer
	}
}

// read is the raw read: false (wait) when nothing is there yet.
func (l *Lean) read(fd uintptr) bool {
	p := l.buf.Take()
	if len(p) == 0 {
		l.errn = errEmptyBuffer
		return true
	}
	for {
		n, err := rawRead(fd, p)
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

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket,
// which never block: made as raw system calls, they keep the goroutine's
// P, as a peek does. Through syscall.Read the runtime would mark the P as
// in a system call around each one, and its monitor (sysmon), finding one
// there on its rounds, would keep waking every 20 µs to look again: on a
// proxy doing a few system calls per request, some 3% of its CPU.
func rawRead(fd uintptr, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawWrite sends with MSG_NOSIGNAL: a peer that left makes it fail with
// EPIPE, with no SIGPIPE for the runtime to field.
func rawWrite(fd uintptr, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
