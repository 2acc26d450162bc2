package http1

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1write"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// Connection states, for Shutdown.
const (
	connActive int32 = iota
	connIdle
)

// bufSize is the size of every pooled buffer: the largest request or
// response head, and the unit bodies are streamed in.
const bufSize = 16 << 10

// hotIdle is how long an idle client connection keeps its read buffer
// (and its goroutine), waiting for the next request; past it the buffer
// goes back to the pool and the connection is parked. Under load the next
// request on a keep-alive connection comes much sooner; an idle connection
// should cost next to nothing. 20 ms halved what idle connections weigh
// just after their first request, but a client pausing 20-200 ms between
// requests then parked and resumed for each, and the open-loop p99 at half
// load went from below HAProxy's to 3-30x it (bench/run.sh fixedrate).
const hotIdle = 200 * time.Millisecond

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// countBuffers turns on buffersOut, the count of pooled buffers taken and
// not given back (see CountBuffers); off, the hot path pays one load.
var (
	countBuffers atomic.Bool
	buffersOut   atomic.Int64
)

func getBuf() *[]byte {
	if countBuffers.Load() {
		buffersOut.Add(1)
	}
	return bufPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if countBuffers.Load() {
		buffersOut.Add(-1)
	}
	bufPool.Put(b)
}

// CountBuffers starts counting the engine's 16 KiB buffers taken and not
// given back, by every Server of the process, and returns the count so
// far: what connections hold while they wait is measured by the change.
// Tests call it; a shared counter on every take is not free.
func CountBuffers() int64 {
	countBuffers.Store(true)
	return buffersOut.Load()
}

// clientConn is one client connection of the HTTP/1.1 engine. One goroutine
// serves it, request after request; a second one exists only while a
// request body streams to a shard (copyBody) or a tunnel is open.
type clientConn struct {
	s  *Server
	nc net.Conn
	fd int // nc's socket (under TLS, the socket under it), for peek; -1 if none
	// tls: nc is a TLS connection. Its socket holds records, not requests:
	// bytes waiting there may be a close_notify (see peerGone).
	tls   bool
	ip    string
	state atomic.Int32
	// prev and next link the Server's connections (under its mu).
	prev, next *clientConn
	parked     parkedState // while the parker holds the connection

	rbuf *[]byte // read buffer, nil while idle
	rb   []byte
	r, w int // rb[r:w] holds received bytes not yet consumed

	// *active holds the request state while the connection is served: a
	// parked connection gives it back (see attach).
	*active
	headN int // length of in's head in rb[r:]
	// bodyStop asks whoever reads the request body on another goroutine
	// (the body copy, the HTTP/2 bridge) to stop.
	bodyStop atomic.Bool
	served   int    // requests read so far
	wb       []byte // scratch for heads we write; from the pool while active
	wbuf     *[]byte
	wdl      time.Time // write deadline last set
}

// active is a connection's request state: the request, its body reader,
// its exchange with the shard. Most of what a connection weighs, it is
// taken from a pool when the connection reads a request and given back
// when it parks, so a parked connection weighs its socket and a few words.
type active struct {
	in   inbound
	body bodyReader
	x    exchange
	// lean reads the client's socket into rb, taken only once bytes are
	// there (not under TLS: see sock.Lean).
	lean sock.Lean
	// rec holds what the request's record needs of its head (method,
	// path, query, client address, key) when requests are recorded: rb
	// may be overwritten by the body, or given back, before Done. Kept
	// across the pool, so that recording allocates nothing.
	rec []byte
}

var activePool = sync.Pool{New: func() any { return new(active) }}

// attach gives the connection its request state, if it has none.
func (cc *clientConn) attach() {
	if cc.active == nil {
		cc.active = activePool.Get().(*active)
		cc.x.cc = cc
		if !cc.tls {
			cc.lean.Init(cc.nc)
		}
	}
}

// readLean reads the next request's first bytes into rb, taking the read
// buffer only once they are there: a keep-alive connection waiting for its
// next request, and a new one whose request is still on its way, hold
// none. Under TLS it reads with the buffer held (records must be
// decrypted into something).
func (cc *clientConn) readLean() (int, error) {
	if !cc.lean.Ready() {
		cc.acquireRead()
		return cc.nc.Read(cc.rb)
	}
	return cc.lean.Read((*leanRead)(cc))
}

// leanRead is the client connection's read buffer as a sock.Buffer.
type leanRead clientConn

func (l *leanRead) Take() []byte {
	cc := (*clientConn)(l)
	if cc.rbuf == nil {
		cc.rbuf = getBuf()
		cc.rb = *cc.rbuf
	}
	cc.r, cc.w = 0, 0
	return cc.rb
}

func (l *leanRead) Give() {
	cc := (*clientConn)(l)
	putBuf(cc.rbuf)
	cc.rbuf, cc.rb = nil, nil
}

// detach gives the request state back; the connection holds nothing of
// its last request (see release).
func (cc *clientConn) detach() {
	if a := cc.active; a != nil {
		cc.active = nil
		rec := a.rec[:0]
		*a = active{}
		if cap(rec) <= 4<<10 {
			a.rec = rec
		}
		activePool.Put(a)
	}
}

func (s *Server) newClientConn(nc net.Conn) *clientConn {
	cc := &clientConn{s: s, nc: nc, fd: sock.FD(sock.Raw(nc))}
	_, cc.tls = nc.(*tls.Conn)
	cc.attach()
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.IP.String()
	} else if nc.RemoteAddr() != nil {
		cc.ip = header.ClientIP(nc.RemoteAddr().String())
	}
	return cc
}

// serve runs the connection until it closes or parks.
func (cc *clientConn) serve() { cc.loop(time.Time{}) }

// resume serves a parked connection again, on a new goroutine, once its
// socket turned readable (or the server drains).
func (cc *clientConn) resume(idleEnd time.Time) {
	cc.state.Store(connActive)
	cc.loop(idleEnd)
}

// loop serves requests one after another. resumedIdleEnd is the idle
// deadline of a connection coming back from the parker (zero otherwise).
func (cc *clientConn) loop(resumedIdleEnd time.Time) {
	parked := false
	defer func() {
		if !parked {
			cc.closeParked()
		}
	}()
	if !resumedIdleEnd.IsZero() && !cc.readAfterPark(resumedIdleEnd) {
		return
	}
	for {
		if cc.r == cc.w {
			switch cc.awaitRequest() {
			case waitClose:
				return
			case waitParked:
				parked = true
				return
			}
		}
		if err := cc.readHead(); err != nil {
			if cc.served == 0 && errors.Is(err, h1.ErrVersion) && cc.handOff() {
				parked = true // another front end's now
				cc.release()
				cc.s.forget(cc)
				return
			}
			cc.failHead(err)
			return
		}
		cc.served++
		switch cc.serveRequest() {
		case nextClose:
			return
		case nextParked:
			parked = true // the parker's now, until the shard answers
			return
		}
	}
}

// handOff offers the connection, with the bytes read so far, to the front
// end that speaks the version its first line names (HTTP/2 with prior
// knowledge); it reports whether it was taken.
func (cc *clientConn) handOff() bool {
	if cc.s.cfg.HandOff == nil {
		return false
	}
	pending := append([]byte(nil), cc.rb[cc.r:cc.w]...)
	_ = cc.nc.SetDeadline(time.Time{})
	if !cc.s.cfg.HandOff(cc.nc, cc.ip, pending) {
		return false
	}
	cc.r = cc.w
	return true
}

// closeParked closes the connection and forgets it; the parker calls it for
// connections that expire while parked.
func (cc *clientConn) closeParked() {
	_ = cc.nc.Close()
	cc.r = cc.w // what was not read yet goes with the connection
	cc.release()
	cc.s.forget(cc)
}

// acquire makes sure the connection holds its buffers.
func (cc *clientConn) acquire() {
	cc.acquireRead()
	if cc.wbuf == nil {
		cc.wbuf = getBuf()
		cc.wb = (*cc.wbuf)[:0]
	}
}

// acquireRead makes sure the connection holds its read buffer, and its
// request state.
func (cc *clientConn) acquireRead() {
	cc.attach()
	if cc.rbuf == nil {
		cc.rbuf = getBuf()
		cc.rb = *cc.rbuf
		cc.r, cc.w = 0, 0
	}
}

// release gives the buffers back; only when rb holds nothing unread.
func (cc *clientConn) release() {
	if cc.rbuf != nil && cc.r == cc.w {
		putBuf(cc.rbuf)
		cc.rbuf, cc.rb, cc.r, cc.w = nil, nil, 0, 0
	}
	if cc.wbuf != nil {
		putBuf(cc.wbuf)
		cc.wbuf, cc.wb = nil, nil
	}
	// The last request's and answer's parsed heads (and a buffered body)
	// alias the buffers just given back: an idle connection that kept them
	// would keep those buffers from being collected.
	if cc.active != nil {
		cc.in = inbound{}
		cc.x.forget()
	}
}

// What awaitRequest found.
const (
	waitRequest = iota // bytes of a request are in rb
	waitClose          // the connection should close
	waitParked         // the parker holds the connection now
)

// awaitRequest waits for the first bytes of the next request, up to the
// idle timeout. Past hotIdle the connection gives back its buffers and is
// parked (no goroutine); where parking is not possible it waits for
// readability itself.
func (cc *clientConn) awaitRequest() int {
	cfg := &cc.s.cfg
	start := time.Now()
	idleEnd := start.Add(cfg.IdleTimeout)
	cc.attach()
	cc.r, cc.w = 0, 0
	if cc.wbuf != nil { // no buffer is needed to wait
		putBuf(cc.wbuf)
		cc.wbuf, cc.wb = nil, nil
	}
	// The deadline is set before the state is published, so that
	// Shutdown's wake-up deadline is never overwritten (see Shutdown).
	_ = cc.nc.SetReadDeadline(earlier(start.Add(hotIdle), idleEnd))
	cc.state.Store(connIdle)
	parked := false
	defer func() {
		if !parked { // a parked connection belongs to the parker now
			cc.state.Store(connActive)
		}
	}()
	if cc.s.draining.Load() {
		return cc.drainIdle()
	}
	n, err := cc.readLean()
	if n > 0 {
		cc.w = n
		return waitRequest
	}
	if !answer.IsTimeout(err) || !time.Now().Before(idleEnd) {
		return waitClose
	}
	if cc.s.draining.Load() {
		return cc.drainIdle()
	}
	// Cold: nothing allocated to the connection while it waits.
	cc.release()
	cc.detach()
	if cc.s.parker.park(cc, idleEnd) {
		parked = true
		return waitParked
	}
	_ = cc.nc.SetReadDeadline(idleEnd)
	if cc.s.draining.Load() {
		return cc.drainIdle()
	}
	if !sock.WaitReadable(cc.nc) {
		if time.Now().Before(idleEnd) && cc.s.draining.Load() {
			return cc.drainIdle() // woken by Shutdown
		}
		return waitClose
	}
	if !cc.readAfterPark(idleEnd) {
		return waitClose
	}
	return waitRequest
}

// readAfterPark reads the bytes that made a parked (or cold) connection
// readable.
func (cc *clientConn) readAfterPark(idleEnd time.Time) bool {
	cc.acquireRead()
	cc.r, cc.w = 0, 0
	if cc.s.draining.Load() {
		return cc.drainIdle() == waitRequest
	}
	_ = cc.nc.SetReadDeadline(idleEnd)
	n, _ := cc.nc.Read(cc.rb)
	cc.w = n
	return n > 0
}

// drainIdle decides, while draining, whether an idle connection has a
// request that was sent before the listener closed: if bytes are waiting,
// it is served (its answer carries Connection: close); if not, it closes.
func (cc *clientConn) drainIdle() int {
	if _, data, ok := sock.Peek(cc.fd); !ok || !data {
		return waitClose
	}
	cc.acquireRead()
	_ = cc.nc.SetReadDeadline(time.Now().Add(cc.s.cfg.ClientHeaderTimeout))
	n, _ := cc.nc.Read(cc.rb[cc.w:])
	cc.w += n
	if n == 0 {
		return waitClose
	}
	return waitRequest
}

// peerGone tells, without reading, whether the client closed its side of
// the connection. A TLS client's close_notify record comes before its
// FIN, so bytes waiting do not mean it is still there.
func (cc *clientConn) peerGone() bool {
	if cc.tls {
		hung, ok := sock.HungUp(cc.fd)
		return ok && hung
	}
	gone, _, ok := sock.Peek(cc.fd)
	return ok && gone
}

// readHead reads until rb[r:] starts with a complete request head, and
// parses it into cc.in. The head must arrive within ClientHeaderTimeout of
// its first bytes.
func (cc *clientConn) readHead() error {
	var deadline time.Time
	for {
		n, err := cc.in.head.Parse(cc.rb[cc.r:cc.w])
		if err == nil {
			cc.headN = n
			return nil
		}
		if !errors.Is(err, h1.ErrIncomplete) {
			return err
		}
		if cc.r > 0 {
			cc.w = copy(cc.rb, cc.rb[cc.r:cc.w])
			cc.r = 0
		}
		if cc.w == len(cc.rb) {
			return answer.ErrHeaderTooLarge
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(cc.s.cfg.ClientHeaderTimeout)
			_ = cc.nc.SetReadDeadline(deadline)
		}
		m, rerr := cc.nc.Read(cc.rb[cc.w:])
		cc.w += m
		if m == 0 && rerr != nil {
			if answer.IsTimeout(rerr) {
				return answer.ErrHeaderTimeout
			}
			return answer.ErrClientGone
		}
	}
}

// failHead answers a head that could not be read, and the connection closes.
func (cc *clientConn) failHead(err error) {
	switch {
	case errors.Is(err, answer.ErrClientGone):
		return
	case errors.Is(err, h1.ErrVersion):
		err = answer.ErrVersion
	case errors.Is(err, h1.ErrTooManyFields):
		err = answer.ErrHeaderTooLarge
	case errors.Is(err, h1.ErrMalformed):
		cc.s.log.Debug("malformed request", "client", cc.ip, "err", err)
		err = answer.ErrBadRequest
	}
	cc.r = cc.w // nothing more is read from this connection
	cc.x.reset(time.Now())
	cc.describeUnread()
	cc.writeAnswer(answer.For(err, ""), true)
	cc.s.router.Done(&cc.x.d) // its access log line: an error, with no method or path
}

// writeAnswer sends the proxy's own answer; with closing, it says so.
func (cc *clientConn) writeAnswer(a answer.Answer, closing bool) {
	cc.acquire()
	b, bodyLen := h1write.AppendAnswer(cc.scratch(), a, closing)
	cc.x.d.Answered(a.Status, a.Body.Error, bodyLen)
	_ = cc.write(b)
}

// scratch returns the connection's write buffer, empty, for a head or a
// piece of body to be built in; keepScratch takes it back once it grew.
func (cc *clientConn) scratch() []byte {
	if cc.wbuf == nil {
		cc.wbuf = getBuf()
		cc.wb = (*cc.wbuf)[:0]
	}
	return cc.wb[:0]
}

// releaseScratch gives the write buffer back while nothing is to be
// written (a request waits for its shard).
func (cc *clientConn) releaseScratch() {
	if cc.wbuf != nil {
		putBuf(cc.wbuf)
		cc.wbuf, cc.wb = nil, nil
	}
}

// keepScratch keeps b, built from scratch, as the write buffer.
func (cc *clientConn) keepScratch(b []byte) { cc.wb = b[:0] }

// takeUnread consumes and returns what was read from the client and not
// yet used (after an upgrade: the new protocol's first bytes).
func (cc *clientConn) takeUnread() []byte {
	p := cc.rb[cc.r:cc.w]
	cc.r, cc.w = 0, 0
	return p
}

// readBuffer is the connection's read buffer, for a tunnel to copy with.
func (cc *clientConn) readBuffer() []byte {
	cc.acquireRead()
	return cc.rb
}

// write sends p to the client, within the client write timeout.
func (cc *clientConn) write(p []byte) error {
	now := time.Now()
	if cc.wdl.Sub(now) < cc.s.cfg.ClientWriteTimeout-time.Second {
		cc.wdl = now.Add(cc.s.cfg.ClientWriteTimeout)
		_ = cc.nc.SetWriteDeadline(cc.wdl)
	}
	var err error
	if a := cc.active; a != nil && a.lean.Ready() {
		_, err = a.lean.Write(p) // no runtime system-call bookkeeping (see sock.Lean)
	} else {
		_, err = cc.nc.Write(p)
	}
	if err != nil {
		return answer.ErrClientGone
	}
	return nil
}

// errBodyStopped: the engine stopped reading the request body (the shard
// answered before it ended).
var errBodyStopped = errors.New("request body reading stopped")

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
