package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peek reports, without blocking or consuming anything, whether the peer
// of nc has closed (or reset) its side (gone) and whether bytes are waiting
// to be read (data). ok is false when nc is not a socket that can be asked.
func peek(nc net.Conn) (gone, data, ok bool) {
	sc, isSC := nc.(syscall.Conn)
	if !isSC {
		return false, false, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, false, false
	}
	cerr := raw.Control(func(fd uintptr) { gone, data, _ = peekFD(fd) })
	return gone, data, cerr == nil
}

// peekFD looks at a socket without consuming: gone when the peer closed or
// reset it, data when bytes wait, wait when neither (it would block).
func peekFD(fd uintptr) (gone, data, wait bool) {
	var b [1]byte
	n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return false, false, true
	case err != nil, n == 0:
		return true, false, false
	}
	return false, true, false
}

// waitReadable blocks until nc has bytes (or a close) to read, or its read
// deadline passes, without reading and without a buffer: an idle
// connection then costs its goroutine and socket only.
func waitReadable(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true // the caller reads with a buffer instead
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	err = raw.Read(func(fd uintptr) bool {
		_, _, wait := peekFD(fd)
		return !wait
	})
	return err == nil
}

// idleConnUsable tells whether a pooled connection can carry a request: the
// shard has neither closed it nor sent bytes nobody asked for.
func idleConnUsable(nc net.Conn) bool {
	gone, data, ok := peek(nc)
	return !ok || (!gone && !data)
}
