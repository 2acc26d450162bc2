package sock

import (
	"errors"
	"net"
	"os"
	"time"
)

// Buffer is what a Lean read reads into. Take hands out the buffer (never
// empty); Give takes it back when the read found nothing yet, so that its
// owner holds no buffer while it waits.
type Buffer interface {
	Take() []byte
	Give()
}

// ReadOnce reads once from nc into b's buffer: through l when l is ready
// (the buffer taken only when bytes are there), else with the buffer
// taken first (TLS, or no lean reads on this platform).
func ReadOnce(l *Lean, nc net.Conn, b Buffer) (int, error) {
	if !l.Ready() {
		return nc.Read(b.Take())
	}
	return l.Read(b)
}

// WriteThenRead writes p to nc, then reads the first bytes of the answer
// as ReadOnce does. Through a ready l the wait for the answer follows the
// write with no read that finds nothing yet; what the socket does not
// take at once (or all of p, when the read deadline had passed before the
// write) is written by nc, under writeDeadline unless it is zero.
func WriteThenRead(l *Lean, nc net.Conn, p []byte, b Buffer, writeDeadline time.Time) (int, error) {
	if l.Ready() {
		n, rest, err := l.WriteRead(p, b)
		switch {
		case len(rest) == 0:
			return n, err
		case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
			return 0, err
		}
		p = rest
	}
	if !writeDeadline.IsZero() {
		_ = nc.SetWriteDeadline(writeDeadline)
	}
	if _, err := nc.Write(p); err != nil {
		return 0, err
	}
	return ReadOnce(l, nc, b)
}
