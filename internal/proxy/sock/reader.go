package sock

import (
	"io"
	"net"
	"sync"
)

// ReadBuffers is a pool of read buffers of one size, for Readers.
type ReadBuffers struct {
	size int
	pool sync.Pool
}

// NewReadBuffers returns a pool of buffers of size bytes.
func NewReadBuffers(size int) *ReadBuffers {
	rb := &ReadBuffers{size: size}
	rb.pool.New = func() any { b := make([]byte, size); return &b }
	return rb
}

// Reader is a buffered reader of a connection that holds its buffer only
// while the buffer has bytes not yet read: a connection waiting for its
// peer's next bytes holds none (on a plain socket it waits through Lean;
// over TLS the buffer is taken for the read). Reads at least as large as
// the buffer go straight to the connection. Not safe for concurrent use.
type Reader struct {
	nc      net.Conn
	pending []byte // bytes read from nc before, returned first
	lean    Lean
	bufs    *ReadBuffers
	buf     *[]byte // nil while empty
	r, w    int     // (*buf)[r:w] is unread
	err     error   // an error that came with bytes, for the next Read
}

// NewReader returns a Reader of nc, with buffers from bufs, that first
// returns pending (bytes already read from nc).
func NewReader(nc net.Conn, pending []byte, bufs *ReadBuffers) *Reader {
	rd := &Reader{nc: nc, pending: pending, bufs: bufs}
	rd.lean.Init(nc)
	return rd
}

// Read implements io.Reader.
func (rd *Reader) Read(p []byte) (int, error) {
	if len(rd.pending) > 0 {
		n := copy(p, rd.pending)
		rd.pending = rd.pending[n:]
		return n, nil
	}
	if rd.r == rd.w {
		if err := rd.err; err != nil {
			rd.err = nil
			return 0, err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if len(p) >= rd.bufs.size {
			return rd.nc.Read(p)
		}
		if err := rd.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*rd.buf)[rd.r:rd.w])
	rd.r += n
	if rd.r == rd.w {
		(*readerBuf)(rd).Give()
	}
	return n, nil
}

// Buffered tells how many bytes the Reader holds unread.
func (rd *Reader) Buffered() int { return len(rd.pending) + rd.w - rd.r }

// Holding tells whether the Reader holds a buffer.
func (rd *Reader) Holding() bool { return rd.buf != nil }

// fill reads once into the (empty) Reader: some bytes, or an error.
func (rd *Reader) fill() error {
	n, err := ReadOnce(&rd.lean, rd.nc, (*readerBuf)(rd))
	if n == 0 {
		(*readerBuf)(rd).Give()
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	rd.r, rd.w, rd.err = 0, n, err
	return nil
}

// readerBuf is a Reader as the Buffer its reads take.
type readerBuf Reader

func (b *readerBuf) Take() []byte {
	if b.buf == nil {
		b.buf = b.bufs.pool.Get().(*[]byte)
	}
	return *b.buf
}

func (b *readerBuf) Give() {
	if b.buf != nil {
		b.bufs.pool.Put(b.buf)
		b.buf = nil
	}
	b.r, b.w = 0, 0
}
