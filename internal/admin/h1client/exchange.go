package h1client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// Answer is what a shard answered.
type Answer struct {
	Status int
	// Body is the body's first bytes, up to the limit Do was given.
	Body string
	// Truncated: the body was longer than the limit.
	Truncated bool
}

// inlineBody is the largest body sent in the same write as the head; a
// larger one follows it in the same system call (writev) from where it is.
const inlineBody = 16 << 10

// Do sends r to t as exchange i of g (0 <= i < the group's n; one
// exchange at a time per index), with trace, when not nil, in place of the
// caller's trace context lines, and reads the answer, keeping limit bytes
// of its body. deadline bounds it all: waiting for a connection, dialing,
// writing and reading. It fails with ErrTimeout when the deadline passed,
// with the group's context error when the group ended, else with what went
// wrong (a dial error as Dial returned it).
func (g *Group) Do(i int, t Target, r *Request, trace []byte, deadline time.Time, limit int) (Answer, error) {
	e := g.c.getExchange()
	defer g.c.putExchange(e)
	for tries := 0; ; tries++ {
		p, c, err := g.c.conn(g, t, deadline)
		if err != nil {
			return Answer{}, g.failed(err, deadline)
		}
		if !g.enter(i, c) {
			p.put(c)
			return Answer{}, g.ctx.Err()
		}
		a, keep, err := e.run(c, t, r, trace, limit, deadline, &g.c.cfg)
		g.leave(i)
		if keep && err == nil {
			p.put(c)
		} else {
			p.discard(c)
		}
		if err == nil {
			return a, nil
		}
		// The shard closed a pooled connection while it sat idle, or as
		// the request went: sent again on another.
		again := c.reused && e.got == 0 && tries < g.c.cfg.MaxConns && time.Now().Before(deadline) && g.ctx.Err() == nil
		if !again {
			return Answer{}, g.failed(err, deadline)
		}
	}
}

// failed says why an exchange failed: the group's end, the deadline, or err.
func (g *Group) failed(err error, deadline time.Time) error {
	switch {
	case g.ctx.Err() != nil:
		return g.ctx.Err()
	case !time.Now().Before(deadline) || errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// exchange is the buffers of one exchange, pooled.
type exchange struct {
	w     []byte // the request as written
	r     []byte // read buffer: r[:n] holds what was read and not consumed
	n     int
	got   int64 // answer bytes read on this connection
	resp  h1.Response
	ch    h1.Chunked
	body  []byte // the body's first limit bytes
	total int64  // body bytes seen
	cut   bool   // the body was not read to its end
}

// Take and Give make an exchange the buffer of a lean read (sock.Buffer).
func (e *exchange) Take() []byte { return e.r[e.n:] }

// Give does nothing: the buffer is the exchange's for all of it.
func (e *exchange) Give() {}

func (c *Client) getExchange() *exchange {
	if e, ok := c.exchanges.Get().(*exchange); ok {
		return e
	}
	return &exchange{r: make([]byte, 4<<10)}
}

// putExchange keeps e for the next exchange, without the large buffers
// an unusual answer made it grow.
func (c *Client) putExchange(e *exchange) {
	if cap(e.r) > 16<<10 {
		e.r = make([]byte, 4<<10)
	}
	if cap(e.body) > 16<<10 {
		e.body = nil
	}
	if cap(e.w) > 64<<10 {
		e.w = nil
	}
	c.exchanges.Put(e)
}

// run is one exchange on c. keep tells whether c ended on a message
// boundary with nothing more from the shard, ready for the next.
func (e *exchange) run(c *conn, t Target, r *Request, trace []byte, limit int, deadline time.Time, cfg *Config) (a Answer, keep bool, err error) {
	e.n, e.got, e.body, e.total, e.cut = 0, 0, e.body[:0], 0, false
	if err := c.nc.SetDeadline(deadline); err != nil {
		return a, false, err
	}
	if err := e.send(c, t, r, trace); err != nil {
		return a, false, err
	}
	hn, err := e.head(c, cfg.MaxHead)
	if err != nil {
		return a, false, err
	}
	keep = !e.resp.Flags.Has(h1.FlagConnClose) && (e.resp.Minor > 0 || e.resp.Flags.Has(h1.FlagConnKeepAlive))
	a.Status = e.resp.Status
	max := int64(limit) + cfg.MaxDrain
	switch e.resp.Framing(r.line[:len(r.Method)]) {
	case h1.FramingNone:
		keep = keep && e.n == hn // bytes past the answer: nobody asked for them
	case h1.FramingLength:
		var whole bool
		whole, err = e.length(c, hn, e.resp.ContentLength, limit, max)
		keep = keep && whole
	case h1.FramingChunked:
		var whole bool
		whole, err = e.chunked(c, hn, limit, max)
		keep = keep && whole
	case h1.FramingClose:
		err, keep = e.untilClose(c, hn, limit, max), false
	default: // a tunnel: nothing we can read
		keep = false
	}
	a.Body, a.Truncated = string(e.body), e.cut || e.total > int64(limit)
	return a, keep, err
}

// send writes the request and reads the first bytes of the answer.
func (e *exchange) send(c *conn, t Target, r *Request, trace []byte) error {
	e.w = r.appendHead(e.w[:0], t.Addr, trace)
	if len(r.Body) <= inlineBody {
		e.w = append(e.w, r.Body...)
		return e.took(c.writeRead(e.w, e))
	}
	bufs := net.Buffers{e.w, r.Body}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		return err
	}
	return e.fill(c)
}

// head reads until the answer's final head is whole, skipping interim
// (1xx) answers, and returns its length.
func (e *exchange) head(c *conn, max int) (int, error) {
	for {
		hn, err := e.resp.Parse(e.r[:e.n])
		switch {
		case err == nil && e.resp.Informational():
			e.n = copy(e.r, e.r[hn:e.n])
			continue
		case err == nil:
			return hn, nil
		case !errors.Is(err, h1.ErrIncomplete):
			return 0, fmt.Errorf("malformed answer: %v", err)
		case e.n == len(e.r):
			if len(e.r) >= max {
				return 0, fmt.Errorf("answer head over %d bytes", max)
			}
			e.r = append(e.r, make([]byte, min(len(e.r), max-len(e.r)))...)
		}
		if err := e.fill(c); err != nil {
			return 0, err
		}
	}
}

// length reads a body of n bytes, the first hn..e.n of which are read
// already. whole: it ended on the message boundary.
func (e *exchange) length(c *conn, hn int, n int64, limit int, max int64) (whole bool, err error) {
	p := e.r[hn:e.n]
	whole = int64(len(p)) <= n
	p = p[:min(int64(len(p)), n)]
	e.keep(p, limit)
	want := n
	if n > max { // not worth draining: closed once the kept part is read
		want, e.cut, whole = min(n, int64(limit)), true, false
	}
	for e.total < want {
		e.n = 0
		if err := e.fill(c); err != nil {
			return false, unexpectedEOF(err)
		}
		p := e.r[:e.n]
		if left := n - e.total; int64(len(p)) > left {
			p, whole = p[:left], false
		}
		e.keep(p, limit)
	}
	return whole, nil
}

// chunked reads a chunked body, its trailers dropped.
func (e *exchange) chunked(c *conn, hn int, limit int, max int64) (whole bool, err error) {
	e.ch.Reset()
	p := e.r[hn:e.n]
	for {
		for len(p) > 0 {
			used, data, done, err := e.ch.Next(p)
			if err != nil {
				return false, fmt.Errorf("malformed answer body: %v", err)
			}
			e.keep(data, limit)
			if p = p[used:]; done {
				return len(p) == 0, nil
			}
		}
		if e.total > max {
			e.cut = true
			return false, nil
		}
		e.n = 0
		if err := e.fill(c); err != nil {
			return false, unexpectedEOF(err)
		}
		p = e.r[:e.n]
	}
}

// untilClose reads a body that ends when the shard closes the connection.
func (e *exchange) untilClose(c *conn, hn int, limit int, max int64) error {
	e.keep(e.r[hn:e.n], limit)
	for e.total <= max {
		e.n = 0
		if err := e.fill(c); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		e.keep(e.r[:e.n], limit)
	}
	e.cut = true
	return nil
}

// keep counts p as body and keeps what fits in limit.
func (e *exchange) keep(p []byte, limit int) {
	if room := limit - len(e.body); room > 0 {
		e.body = append(e.body, p[:min(room, len(p))]...)
	}
	e.total += int64(len(p))
}

// fill reads once more into e.r[e.n:].
func (e *exchange) fill(c *conn) error { return e.took(c.read(e)) }

func (e *exchange) took(n int, err error) error {
	e.n += n
	e.got += int64(n)
	if n > 0 {
		return nil
	}
	return err
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeRead writes p, then reads the first bytes of the answer into b's
// buffer (sock.WriteThenRead).
func (c *conn) writeRead(p []byte, b *exchange) (int, error) {
	return sock.WriteThenRead(&c.lean, c.nc, p, b, time.Time{})
}

// read reads once into b's buffer.
func (c *conn) read(b *exchange) (int, error) { return sock.ReadOnce(&c.lean, c.nc, b) }
