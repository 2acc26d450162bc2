package sock

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener for client connections. On Linux a
// connection is handed to accept only once its first bytes (a request
// line, a TLS ClientHello, the HTTP/2 preface) have arrived, or when the
// kernel's retransmitted SYN-ACK is answered about a second later without
// any (TCP_DEFER_ACCEPT, nginx's "deferred", HAProxy's "defer-accept"): a
// burst of connections whose requests are still on their way costs no
// goroutine, and one that never speaks costs none until then. A client
// that connects and closes is accepted at once (it reads EOF).
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		// Only an economy: where the kernel refuses it, connections are
		// accepted at once, as without it.
		return c.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
		})
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
