// Package sock holds the socket helpers the front ends and the shard pools
// share: a connection's descriptor, a peek that neither blocks nor
// consumes (has the peer gone, are bytes waiting?), and a wait for
// readability that holds no buffer. Where they cannot work (not Linux),
// they answer so that callers fall back to reading.
package sock

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD returns the socket descriptor of nc, or -1 when nc is not a plain
// socket. It is looked up once per connection: the descriptor stays the
// same while the connection is open, and only its owner closes it.
func FD(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if raw.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// Peek reports, without blocking or consuming anything, whether the peer
// of socket fd has closed (or reset) its side (gone) and whether bytes are
// waiting to be read (data). ok is false when fd is not known. It does not
// allocate: it is on the request path.
func Peek(fd int) (gone, data, ok bool) {
	if fd < 0 {
		return false, false, false
	}
	gone, data, _ = peekFD(uintptr(fd))
	return gone, data, true
}

// peekFD looks at a socket without consuming: gone when the peer closed or
// reset it, data when bytes wait, wait when neither (it would block).
func peekFD(fd uintptr) (gone, data, wait bool) {
	var b [1]byte
	// A raw system call: MSG_DONTWAIT never blocks, and unix.Recvfrom
	// would allocate the address it does not need.
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return false, false, true
	case errno != 0, n == 0:
		return true, false, false
	}
	return false, true, false
}

// WaitReadable blocks until nc has bytes (or a close) to read, or its read
// deadline passes, without reading and without a buffer: an idle
// connection then costs its goroutine and socket only.
func WaitReadable(nc net.Conn) bool { return AwaitReadable(nc) == nil }

// AwaitReadable is WaitReadable with the reason it stopped waiting: nil
// when nc has bytes or a close to read, else the deadline or the error.
func AwaitReadable(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw.Read(func(fd uintptr) bool {
		_, _, wait := peekFD(fd)
		return !wait
	})
}

// HungUp reports, without blocking or consuming anything, whether the
// peer of socket fd has shut down its side (or reset the connection), even
// with bytes still waiting to be read: a TLS peer's close_notify record
// arrives before its FIN, so Peek sees data where the peer is gone. ok is
// false when fd is not known.
func HungUp(fd int) (hung, ok bool) {
	if fd < 0 {
		return false, false
	}
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(pfd[:], 0)
	if err != nil {
		return false, false
	}
	return n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0, true
}

// IdleUsable tells whether a pooled connection can carry a request: the
// shard has neither closed it nor sent bytes nobody asked for.
func IdleUsable(fd int) bool {
	gone, data, ok := Peek(fd)
	return !ok || (!gone && !data)
}
