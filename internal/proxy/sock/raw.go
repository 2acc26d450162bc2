package sock

import (
	"crypto/tls"
	"net"
)

// Raw returns the socket a connection runs on: nc itself, or the
// connection under a TLS one (through a Prefixed connection whose replayed
// bytes were all read). A TLS connection's own readiness is not its
// socket's: it may hold records it already read, so a caller waits on the
// socket only once a read of the TLS connection found nothing buffered.
func Raw(nc net.Conn) net.Conn {
	for {
		switch c := nc.(type) {
		case *tls.Conn:
			nc = c.NetConn()
		case *prefixConn:
			if len(c.pending) > 0 {
				return nc
			}
			nc = c.Conn
		default:
			return nc
		}
	}
}
