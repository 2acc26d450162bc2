package http1

import (
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1write"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// clientCheckInterval is how often, while waiting for a shard, the engine
// looks whether the client has gone; a client that left cancels its request.
const clientCheckInterval = 200 * time.Millisecond

// exchange is one request forwarded to a shard and its answer relayed. It
// lives in its clientConn and is reused for every request.
type exchange struct {
	cc *clientConn
	// d is the request's routing decision; b is its owner's backend.
	d  route.Decision
	b  *route.Backend
	uc *upstream.Conn // while a body copy writes to it

	// What the engine needs of the request head once rb may be reused.
	minor           int
	isHead, upgrade bool
	key             string // of an upgrade only
	websocket       bool   // the upgrade is to WebSocket
	clientClose     bool
	dbuf            *[]byte // decodes a chunked answer for an HTTP/1.0 client
	streaming       bool
	copyDone        chan error
	copyEnded       atomic.Bool  // copyBody returned: it no longer reads the client
	bodyIn          atomic.Int64 // request body bytes sent to the shard (tunnel bytes too)
	copyErr         error        // why copyBody stopped early, once stopCopy has it
	clientFailed    atomic.Bool
	ubuf            *[]byte
	ub              []byte
	ur, uw          int
	resp            h1.Response
	headSent        bool
	uClean          bool
	// scratch holds the key the routing record points to, until the
	// request ends.
	scratch *keys.Scratch
	// try counts the request's attempts (see retryable); headDeadline
	// bounds the wait for the answer's head in total.
	try          int
	headDeadline time.Time
	// pending is a request sent whole, not yet written: the first read of
	// its answer writes it (see readUpUntil).
	pending []byte
}

func (x *exchange) reset(now time.Time) {
	*x = exchange{cc: x.cc, resp: h1.Response{Head: h1.Head{Fields: x.resp.Fields[:0]}}}
	x.d.Begin(route.HTTP1, now)
}

// run forwards the request to x.b and relays the answer. It returns what
// the client connection does next.
func (x *exchange) run() next {
	if x.b.Protocol == watch.H2C {
		return nextOf(x.bridge())
	}
	return x.attempt(0)
}

// attempt sends the request on a pooled shard connection and relays the
// answer, once more on a fresh connection when a pooled one failed before
// its answer began (retryable); first numbers the first try.
func (x *exchange) attempt(first int) next {
	for try := first; ; try++ {
		uc, err := upstream.PoolOf(x.b).Get(x.shed) // a dial waits: lean, like a shard that thinks
		if err != nil {
			return nextOf(x.fail(nil, err))
		}
		x.try = try
		err = x.send(uc)
		if err == nil {
			x.headDeadline = time.Now().Add(x.cc.s.cfg.UpstreamTimeout)
			err = x.readFinalHead(uc)
		}
		if n, done := x.settle(uc, err); done {
			return n
		}
	}
}

// settle ends the wait for the answer's head: the answer relayed, the
// proxy's error answered, or (false) a try to make again. A parked request
// belongs to the parker from then on: nothing here touches it.
func (x *exchange) settle(uc *upstream.Conn, err error) (next, bool) {
	switch {
	case err == errParked:
		return nextParked, true
	case err != nil && x.retryable(uc, err, x.try):
		upstream.PoolOf(x.b).Discard(uc)
		return 0, false
	case err != nil:
		return nextOf(x.fail(uc, err)), true
	}
	return nextOf(x.relay(uc)), true
}

// resumeExchange goes on, on a new goroutine, with a request that waited
// for its shard in the parker: the rest of the answer's head, the answer,
// then the connection's next requests.
func (cc *clientConn) resumeExchange(uc *upstream.Conn) {
	x := &cc.x
	cc.s.shedding.Add(-1)
	n, done := x.settle(uc, x.readFinalHead(uc))
	if !done {
		n = x.attempt(x.try + 1)
	}
	switch n {
	case nextParked:
		return
	case nextClose:
		cc.endExchange()
		cc.closeParked()
		return
	}
	cc.endExchange()
	cc.loop(time.Time{})
}

// forget drops what aliases the connection's buffers (the answer's parsed
// head, the routing record's key) and the answer's field list, once the
// connection is idle.
func (x *exchange) forget() {
	x.resp = h1.Response{}
	x.d = route.Decision{}
}

// finish returns the exchange's buffers and ends the request's record.
func (x *exchange) finish() {
	if x.ubuf != nil {
		putBuf(x.ubuf)
		x.ubuf, x.ub = nil, nil
	}
	if x.dbuf != nil {
		putBuf(x.dbuf)
		x.dbuf = nil
	}
	x.d.BytesIn += x.bodyIn.Load()
	x.cc.s.router.Done(&x.d)
}

// retryable: a request whose pooled connection failed before any answer
// byte arrived (typically one the shard had just closed) goes once more, on
// a new connection, to the same shard, if its method allows and its body
// was not streamed away.
func (x *exchange) retryable(uc *upstream.Conn, err error, attempt int) bool {
	if attempt > 0 || !uc.Reused || x.streaming || x.uw > 0 || x.headSent {
		return false
	}
	if !errors.Is(err, errUpstreamIO) {
		return false
	}
	return h1.Idempotent(string(x.cc.in.head.Method))
}

// fail ends an exchange that went wrong: the shard connection is closed,
// and the client gets the proxy's answer if no answer started yet.
func (x *exchange) fail(uc *upstream.Conn, err error) bool {
	if uc != nil {
		upstream.PoolOf(x.b).Discard(uc)
	}
	// Looked at before stopCopy, which wakes a running copy by failing its
	// read of the client: a shard that fails mid-upload is still answered.
	clientGone := errors.Is(err, answer.ErrClientGone) || x.clientFailed.Load()
	bodyDone := x.stopCopy()
	if errors.Is(x.copyErr, answer.ErrBadRequest) || errors.Is(x.copyErr, answer.ErrBodyTooLarge) {
		// The client broke its body's chunked framing, or its body passed
		// --max-request-body-bytes: the shard got none of the bytes past
		// that point, and its connection is closed.
		err, clientGone = x.copyErr, false
	}
	if clientGone {
		x.d.Status = answer.StatusClientGone
		return false
	}
	if x.headSent {
		return false // mid-body: closing is all that is left to say
	}
	err = answer.FromShard(err)
	x.d.Status = answer.For(err, x.b.Name).Status
	keep := bodyDone && !x.clientClose && x.cc.skipBody()
	x.cc.writeAnswer(answer.For(err, x.b.Name), !keep)
	return keep
}

// errUpstreamIO marks a failed read or write on a shard connection.
var errUpstreamIO = errors.New("shard connection failed")

// send writes the request head, and the body when it is buffered or
// already wholly received; a body still arriving is streamed by copyBody
// on its own goroutine while the answer is awaited.
func (x *exchange) send(uc *upstream.Conn) error {
	cc := x.cc
	rh := h1write.RequestHead{ClientIP: cc.ip, TLS: cc.tls, HostFallback: x.b.Addr, Upgrade: x.upgrade, DropExpect: cc.in.continued,
		Previous: x.d.Previous, PreviousAddr: x.d.PreviousAddr, Traceparent: x.d.Trace.Outgoing()}
	wb := h1write.AppendRequest(cc.scratch(), &cc.in.head, rh)
	body, whole := cc.takeBody()
	x.streaming = !whole
	sent := int64(len(body))
	if len(wb)+len(body) <= cap(wb) {
		wb = append(wb, body...)
		body = nil
	}
	cc.keepScratch(wb)
	if whole && len(body) == 0 {
		// Written with the wait for the answer: no read that finds
		// nothing yet (upstream.Conn.WriteReadLean).
		x.pending = wb
		x.bodyIn.Store(sent)
		return nil
	}
	_ = uc.NC.SetWriteDeadline(time.Now().Add(x.cc.s.cfg.UpstreamTimeout))
	if _, err := uc.NC.Write(wb); err != nil {
		return errors.Join(errUpstreamIO, err)
	}
	x.bodyIn.Store(sent)
	if len(body) > 0 {
		if _, err := uc.NC.Write(body); err != nil {
			return errors.Join(errUpstreamIO, err)
		}
	}
	if x.streaming {
		x.uc = uc
		x.copyDone = make(chan error, 1)
		go func() {
			err := x.copyBody(uc)
			x.copyEnded.Store(true)
			x.copyDone <- err
		}()
	}
	return nil
}

// copyBody streams the rest of the request body to the shard. When the
// client fails it aborts the exchange, by closing the shard connection
// under the reader.
func (x *exchange) copyBody(uc *upstream.Conn) error {
	for {
		if x.cc.bodyStop.Load() {
			return errBodyStopped
		}
		raw, _, err := x.cc.nextBody()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errBodyStopped) {
			return err
		}
		if err != nil {
			// The client failed, or its body is cut: the exchange ends,
			// woken from its wait for the shard.
			x.clientFailed.Store(true)
			_ = uc.NC.SetReadDeadline(time.Unix(1, 0))
			return err
		}
		_ = uc.NC.SetWriteDeadline(time.Now().Add(x.cc.s.cfg.UpstreamTimeout))
		if _, err := uc.NC.Write(raw); err != nil {
			// The shard stopped reading; its answer, if any, still counts.
			return errors.Join(errUpstreamIO, err)
		}
		x.bodyIn.Add(int64(len(raw)))
	}
}

// stopCopy ends the body copy, if one runs, and reports whether the whole
// request body was read from the client.
func (x *exchange) stopCopy() bool {
	if x.copyDone == nil {
		return x.cc.bodyDone()
	}
	var err error
	select {
	case err = <-x.copyDone:
	default:
		// Wake the copy wherever it waits: reading the client (bodyStop is
		// looked at after each deadline nextBody sets, so this one is not
		// lost) or writing to the shard.
		x.cc.bodyStop.Store(true)
		_ = x.cc.nc.SetReadDeadline(time.Unix(1, 0))
		if x.uc != nil {
			_ = x.uc.NC.SetWriteDeadline(time.Unix(1, 0))
		}
		err = <-x.copyDone
	}
	x.copyDone, x.copyErr = nil, err
	return err == nil && x.cc.bodyDone()
}

// readUp reads from the shard, within the upstream timeout, and gives up
// early when the client has gone (looked at every clientCheckInterval,
// unless the body copy is reading the client and will notice itself).
// While the request body still streams, the shard's time runs from its
// end: a slow upload is the client's pace, not a slow shard.
func (x *exchange) readUp(uc *upstream.Conn, p []byte) (int, error) {
	return x.readUpUntil(uc, p, time.Now().Add(x.cc.s.cfg.UpstreamTimeout), false)
}

// readUpUntil is readUp with the shard's time running out at deadline (a
// total bound on the answer's head, however slowly its bytes come), moved
// forward while the request body still streams. A nil p reads into the
// exchange's answer buffer, taken only once the shard's bytes are there.
// A request waiting in pending is written first.
// With shed, it gives up with errShardSlow when nothing came from the
// shard within shardHotWait (no upload streaming): the caller then waits
// without its buffers (waitShard).
func (x *exchange) readUpUntil(uc *upstream.Conn, p []byte, deadline time.Time, shed bool) (int, error) {
	timeout := x.cc.s.cfg.UpstreamTimeout
	look := clientCheckInterval
	if shed {
		look = shardHotWait
	}
	for {
		copying := x.streaming && !x.copyEnded.Load()
		if copying {
			deadline = time.Now().Add(timeout)
		}
		_ = uc.NC.SetReadDeadline(earlier(deadline, time.Now().Add(look)))
		var n int
		var err error
		switch {
		case x.pending != nil:
			w := x.pending
			x.pending = nil
			n, err = uc.WriteReadLean(w, (*answerBuf)(x), time.Now().Add(timeout))
		case p == nil:
			n, err = uc.ReadLean((*answerBuf)(x))
		default:
			n, err = uc.NC.Read(p)
		}
		if n > 0 {
			x.d.ShardAnswered()
			return n, nil
		}
		if x.clientFailed.Load() || x.cc.s.forced.Load() {
			return 0, answer.ErrClientGone
		}
		if !answer.IsTimeout(err) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, errors.Join(errUpstreamIO, err)
		}
		if !copying && !time.Now().Before(deadline) {
			return 0, answer.ErrShardTimeout
		}
		if !copying && x.cc.peerGone() {
			return 0, answer.ErrClientGone
		}
		if shed && !copying {
			return 0, errShardSlow
		}
	}
}

// errShardSlow: the shard has not begun its answer within shardHotWait.
var errShardSlow = errors.New("the shard has not answered yet")

// shardHotWait is how long a request waits for its shard's first answer
// byte holding its buffers; past it, it waits without them (waitShard). A
// fast shard answers well within it; when many requests wait at once (a
// stalled shard), what they hold is one goroutine each.
const shardHotWait = 10 * time.Millisecond

// shed gives back the buffers of a request whose shard thinks, or that
// waits for a new shard connection to be dialed: the
// exchange's read buffer, the connection's write buffer and (when it holds
// nothing else) its read buffer go back to the pool; they are taken again
// when needed.
func (x *exchange) shed() {
	if x.ubuf != nil {
		putBuf(x.ubuf)
	}
	x.ubuf, x.ub, x.ur, x.uw = nil, nil, 0, 0
	x.cc.releaseScratch()
	if !x.streaming {
		x.cc.shedRead()
	}
}

// errParked: the request waits for its shard in the parker.
var errParked = errors.New("parked until the shard answers")

// parkMinWait is the least time left before the answer head's deadline
// for a request to wait in the parker; nearer the deadline it waits on its
// goroutine, which times it exactly.
const parkMinWait = 2 * time.Second

// park hands a request whose shard has not begun its answer to the parker
// (no goroutine while the shard thinks), when its whole body was sent and
// enough of its time is left; false: the caller waits itself.
func (x *exchange) park(uc *upstream.Conn) bool {
	if x.streaming || time.Until(x.headDeadline) < parkMinWait {
		return false
	}
	x.cc.s.shedding.Add(1)
	if x.cc.s.parker.parkWaiting(x.cc, uc, x.headDeadline.Add(-parkMinWait/2)) {
		return true // the parker's now: x is not touched again here
	}
	x.cc.s.shedding.Add(-1)
	return false
}

// waitShard waits on its goroutine, holding no buffer (see shed), for the
// shard to begin its answer (or close), until deadline: a request whose
// shard thinks costs its goroutine and a copy of its request head.
func (x *exchange) waitShard(uc *upstream.Conn, deadline time.Time) error {
	x.cc.s.shedding.Add(1)
	defer x.cc.s.shedding.Add(-1)
	for {
		_ = uc.NC.SetReadDeadline(earlier(deadline, time.Now().Add(clientCheckInterval)))
		err := sock.AwaitReadable(uc.NC)
		if err == nil {
			return nil
		}
		if x.clientFailed.Load() || x.cc.s.forced.Load() {
			return answer.ErrClientGone
		}
		if !answer.IsTimeout(err) {
			return errors.Join(errUpstreamIO, err)
		}
		if !time.Now().Before(deadline) {
			return answer.ErrShardTimeout
		}
		if x.cc.peerGone() {
			return answer.ErrClientGone
		}
	}
}

// readFinalHead reads response heads until the final one, relaying
// informational (1xx) answers to the client on the way. The upstream
// timeout bounds the whole head, 1xx answers included, counted from the
// end of the request (a shard that sends its head a byte at a time does not
// restart it).
func (x *exchange) readFinalHead(uc *upstream.Conn) error {
	deadline := x.headDeadline
	for {
		n, err := x.resp.Parse(x.ub[x.ur:x.uw])
		if err == nil {
			x.ur += n
			if !x.resp.Informational() {
				return nil
			}
			if err := x.relayInformational(); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, h1.ErrIncomplete) {
			x.cc.s.log.Debug("bad response from shard", "shard", x.b.Name, "err", err)
			return answer.ErrBadResponse
		}
		if x.ur > 0 {
			x.uw = copy(x.ub, x.ub[x.ur:x.uw])
			x.ur = 0
		}
		if x.ubuf != nil && x.uw == len(x.ub) {
			return answer.ErrBadResponse // a head larger than the buffer
		}
		var p []byte // nothing yet: read lean (see readUpUntil)
		if x.ubuf != nil {
			p = x.ub[x.uw:]
		}
		m, err := x.readUpUntil(uc, p, deadline, x.uw == 0)
		if errors.Is(err, errShardSlow) {
			x.shed()
			if x.park(uc) {
				return errParked
			}
			if err = x.waitShard(uc, deadline); err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		x.uw += m
	}
}

// takeReadBuffer makes sure the exchange holds its buffer for the shard's
// answer.
func (x *exchange) takeReadBuffer() {
	if x.ubuf == nil {
		x.ubuf = getBuf()
		x.ub = *x.ubuf
	}
}

// answerBuf is the exchange's answer buffer as a sock.Buffer, for the
// first read of an answer (see readUpUntil).
type answerBuf exchange

func (a *answerBuf) Take() []byte {
	x := (*exchange)(a)
	x.takeReadBuffer()
	x.ur, x.uw = 0, 0
	return x.ub
}

func (a *answerBuf) Give() {
	x := (*exchange)(a)
	putBuf(x.ubuf)
	x.ubuf, x.ub = nil, nil
}

// relayInformational passes a 1xx answer on (never to an HTTP/1.0 client,
// which would take it as final; RFC 9110 §15.2).
func (x *exchange) relayInformational() error {
	if x.minor == 0 {
		return nil
	}
	wb := h1write.AppendResponse(x.cc.scratch(), &x.resp, h1write.ResponseHead{Shard: x.b.Name})
	x.cc.keepScratch(wb)
	return x.cc.write(wb)
}
