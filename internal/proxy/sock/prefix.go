package sock

import "net"

// Prefixed returns nc with pending, bytes already read from it, replayed
// before what the socket holds: a connection handed from one front end to
// another after its first bytes were read.
func Prefixed(nc net.Conn, pending []byte) net.Conn { return &prefixConn{Conn: nc, pending: pending} }

type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
