package http1

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// serveRequest answers the request whose head is in cc.in: the routing
// step, then the exchange with the shard. It returns what the connection
// does next.
func (cc *clientConn) serveRequest() (n next) {
	in := &cc.in
	x := &cc.x
	cc.acquire()
	cc.bodyStop.Store(false)
	x.reset(time.Now())
	cc.describe(false)
	// The scratch holds the key the routing record points to: given back
	// after the record is done (endExchange).
	x.scratch = keys.AcquireScratch()
	defer func() {
		if n != nextParked { // a parked request ends on the goroutine that resumes it
			cc.endExchange()
		}
	}()
	x.minor = in.head.Minor
	x.isHead = string(in.head.Method) == "HEAD"
	x.clientClose = in.head.Flags.Has(h1.FlagConnClose) ||
		(in.head.Minor == 0 && !in.head.Flags.Has(h1.FlagConnKeepAlive)) || cc.s.draining.Load()
	cc.startBody()
	if string(in.head.Method) == "CONNECT" {
		return nextOf(cc.refuse(answer.ErrMethodNotAllowed, ""))
	}
	if in.head.Flags.Has(h1.FlagContentLength) && cc.overLimit(in.head.ContentLength) {
		// Before any 100 Continue and before any shard: the client learns
		// at once, and sends nothing more.
		return nextOf(cc.refuse(answer.BodyTooLarge(int(min(cc.s.cfg.MaxRequestBodyBytes, math.MaxInt32))), ""))
	}
	if err := cc.checkBodyStart(); err != nil {
		return nextOf(cc.refuse(err, ""))
	}
	err := cc.route(x.scratch)
	cc.describe(true)
	cc.keepKey()
	if err != nil {
		if errors.Is(err, answer.ErrClientGone) {
			return nextClose
		}
		return nextOf(cc.refuse(err, ""))
	}
	x.b = x.d.Backend
	cc.s.router.Commit(&x.d)
	// Only an upgrade to a protocol the proxy can route is passed on (a
	// WebSocket is one stream of one key); for any other (h2c: streams of
	// every key on one shard's connection) the Upgrade field is dropped, so
	// no tunnel can open.
	x.upgrade = in.head.Flags.Has(h1.FlagUpgrade) && connectionHasUpgrade(&in.head) &&
		upgradesOnlyTo(&in.head, cc.s.cfg.UpgradeProtocols)
	if x.upgrade {
		x.key = string(x.d.Key) // a tunnel is tracked by key
		x.websocket = upgradesTo(&in.head, "websocket")
	}
	return x.run()
}

// endExchange ends the request: the routing record, the scratch its key
// points into, the copy of its head.
func (cc *clientConn) endExchange() {
	cc.x.finish()
	keys.ReleaseScratch(cc.x.scratch)
	cc.x.scratch = nil
	cc.endRequest()
}

// next is what a connection does once a request was served.
type next uint8

const (
	nextRequest next = iota // read the next request
	nextClose               // close the connection
	nextParked              // nothing: the request waits in the parker, which resumes it
)

// nextOf is nextRequest when the connection may carry another request.
func nextOf(keep bool) next {
	if keep {
		return nextRequest
	}
	return nextClose
}

// route takes the request's routing step: buffering the body when a body
// rule asks for it, holding the request for a not-ready owner.
func (cc *clientConn) route(s *keys.Scratch) error {
	r, d := cc.s.router, &cc.x.d
	err := r.Route(d, &cc.in, s, cc.bufferBody)
	if errors.Is(err, route.ErrMustWait) {
		err = r.Wait(d, nil, cc.clientGone)
	}
	return err
}

// describe puts the request's side in its record, before its routing
// step (routed false) or after it, as route.Router.DescribeNow says:
// method, path and query copied to cc.rec (the head's bytes in rb do not
// live as long as the record), the client's address, TLS or not.
func (cc *clientConn) describe(routed bool) {
	if !cc.s.router.DescribeNow(&cc.x.d, routed) {
		return
	}
	h := &cc.in.head
	path, query := h.PathQuery()
	b := append(cc.rec[:0], h.Method...)
	b = append(b, path...)
	b = append(b, query...)
	m, p, e := len(h.Method), len(h.Method)+len(path), len(b)
	b = appendClient(b, cc.ip, cc.nc.RemoteAddr())
	cc.rec = b
	q := b[p:e:e]
	if query == nil {
		q = nil
	}
	client := b[e:]
	cc.x.d.Describe(b[:m:m], b[m:p:p], q, unsafe.String(unsafe.SliceData(client), len(client)), cc.tls)
}

// describeUnread puts the client's address in the record of a request
// whose head could not be read (logged; never traced: it had no routing
// step).
func (cc *clientConn) describeUnread() {
	if !cc.s.router.DescribeNow(&cc.x.d, false) {
		return
	}
	b := appendClient(cc.rec[:0], cc.ip, cc.nc.RemoteAddr())
	cc.rec = b
	cc.x.d.Describe(nil, nil, nil, unsafe.String(unsafe.SliceData(b), len(b)), cc.tls)
}

// appendClient appends the client's address, ip:port ([ip]:port for
// IPv6), without the allocation of net.Addr's String.
func appendClient(b []byte, ip string, addr net.Addr) []byte {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return append(b, ip...)
	}
	if strings.IndexByte(ip, ':') >= 0 {
		b = append(append(append(b, '['), ip...), ']')
	} else {
		b = append(b, ip...)
	}
	return strconv.AppendInt(append(b, ':'), int64(tcp.Port), 10)
}

// keepKey copies the key to cc.rec, when the request is recorded (the
// key hash is taken at Done, when what the key pointed into may be gone).
func (cc *clientConn) keepKey() {
	d := &cc.x.d
	if len(d.Key) == 0 || !cc.s.router.Records(d) {
		return
	}
	n := len(cc.rec)
	cc.rec = append(cc.rec, d.Key...)
	d.Key = cc.rec[n:len(cc.rec):len(cc.rec)]
}

// refuse answers the proxy's own error. The connection stays open only if
// the request's body is behind us, so the next request can be found.
func (cc *clientConn) refuse(err error, shard string) bool {
	keep := !cc.x.clientClose && cc.skipBody()
	cc.writeAnswer(answer.For(err, shard), !keep)
	return keep
}

// bodyReader tracks the request body on the client connection.
type bodyReader struct {
	// started: a body byte was consumed, so the body can no longer be
	// skipped from rb (a chunked scan would restart mid-chunk).
	started bool
	framing h1.Framing
	left    int64 // FramingLength: bytes still to come
	chunk   h1.Chunked
	payload int64 // body bytes read so far, framing not counted
	done    bool
}

// startBody consumes the head from rb and sets up reading the body.
func (cc *clientConn) startBody() {
	h := &cc.in.head
	cc.r += cc.headN
	cc.body = bodyReader{framing: h.Framing(), left: h.ContentLength}
	cc.in.raw, cc.in.continued = nil, false
	switch {
	case cc.body.framing == h1.FramingNone,
		cc.body.framing == h1.FramingLength && h.ContentLength == 0:
		cc.body.done = true
		cc.in.body = emptyBody // a body rule finds no key in it
	default:
		cc.in.body = nil // not buffered (yet)
	}
}

var emptyBody = []byte{}

// nextBody returns the next piece of the request body as received (raw)
// and the payload in it (data; the same bytes unless chunked). It consumes
// rb[r:w] and, when that is empty, reads the client into rb from its
// start: whatever the head pointed into must not be needed any more.
// Pieces stay valid until the next call. At the end it returns io.EOF.
func (cc *clientConn) nextBody() (raw, data []byte, err error) {
	b := &cc.body
	if b.done {
		return nil, nil, io.EOF
	}
	if cc.r == cc.w {
		_ = cc.nc.SetReadDeadline(time.Now().Add(cc.s.cfg.ClientBodyTimeout))
		if cc.bodyStop.Load() { // looked at after our deadline: a stop is never overwritten
			return nil, nil, errBodyStopped
		}
		n, err := cc.nc.Read(cc.rb)
		cc.r, cc.w = 0, n
		if n == 0 {
			if answer.IsTimeout(err) {
				return nil, nil, answer.ErrBodyTimeout
			}
			return nil, nil, answer.ErrClientGone
		}
	}
	b.started = true
	if b.framing == h1.FramingLength {
		n := min(int64(cc.w-cc.r), b.left)
		raw = cc.rb[cc.r : cc.r+int(n)]
		cc.r += int(n)
		b.left -= n
		b.done = b.left == 0
		return raw, raw, nil
	}
	consumed, data, done, err := b.chunk.Next(cc.rb[cc.r:cc.w])
	raw = cc.rb[cc.r : cc.r+consumed]
	cc.r += consumed
	b.done = done
	if err != nil {
		return nil, nil, answer.ErrBadRequest
	}
	if b.payload += int64(len(data)); cc.overLimit(b.payload) {
		// Cut: the rest of this body is never read, so the connection
		// closes after the answer.
		b.done = false
		return nil, nil, answer.BodyTooLarge(int(min(cc.s.cfg.MaxRequestBodyBytes, math.MaxInt32)))
	}
	return raw, data, nil
}

// overLimit tells whether n body bytes pass --max-request-body-bytes.
func (cc *clientConn) overLimit(n int64) bool {
	limit := cc.s.cfg.MaxRequestBodyBytes
	return limit > 0 && n > limit
}

// checkBodyStart looks, before the head goes anywhere, at what came of a
// chunked body with it: malformed framing there (a size with a hundred
// leading zeros, one past 64 bits, a 70 KB extension) or a payload already
// over --max-request-body-bytes is refused before any shard sees a byte.
func (cc *clientConn) checkBodyStart() error {
	b := &cc.body
	if b.framing != h1.FramingChunked || b.started || b.done {
		return nil
	}
	var c h1.Chunked
	var payload int64
	for i := cc.r; i < cc.w; {
		n, data, done, err := c.Next(cc.rb[i:cc.w])
		if err != nil {
			return answer.ErrBadRequest
		}
		if payload += int64(len(data)); cc.overLimit(payload) {
			return answer.BodyTooLarge(int(min(cc.s.cfg.MaxRequestBodyBytes, math.MaxInt32)))
		}
		if done || n == 0 {
			break
		}
		i += n
	}
	return nil
}

// bodyInBuffer reports whether the whole body is already in rb, and its
// raw bytes; it consumes nothing.
func (cc *clientConn) bodyInBuffer() ([]byte, bool) {
	b := &cc.body
	switch {
	case b.done:
		return nil, true
	case b.framing == h1.FramingLength:
		if int64(cc.w-cc.r) >= b.left {
			return cc.rb[cc.r : cc.r+int(b.left)], true
		}
	case b.framing == h1.FramingChunked:
		var c h1.Chunked
		var payload int64
		for i := cc.r; i < cc.w; {
			n, data, done, err := c.Next(cc.rb[i:cc.w])
			if payload += int64(len(data)); err != nil || cc.overLimit(payload) {
				return nil, false // nextBody answers it
			}
			i += n
			if done {
				return cc.rb[cc.r:i], true
			}
		}
	}
	return nil, false
}

// skipBody consumes a body that is wholly in rb, so that the connection can
// go on; it reports false when the body is not (the connection must close).
func (cc *clientConn) skipBody() bool {
	if cc.body.started && !cc.body.done {
		return false // part of it was read: where it ends is not known here
	}
	_, ok := cc.takeBody()
	return ok
}

// takeBody consumes the request body when it is wholly in rb (or was
// taken already) and returns it as received; ok is false while some of it
// is still to come (it then streams).
func (cc *clientConn) takeBody() (raw []byte, ok bool) {
	if cc.in.raw != nil || cc.body.done {
		return cc.in.raw, true
	}
	if raw, ok = cc.bodyInBuffer(); ok {
		cc.r += len(raw)
		cc.body.done = true
		cc.in.raw = raw // kept, so that a retry on a fresh connection sends it again
	}
	return raw, ok
}

// bodyDone tells whether the whole request body was read from the client.
func (cc *clientConn) bodyDone() bool { return cc.body.done }

// bodyLength is the declared length of a request body still to come, -1
// when it is chunked.
func (cc *clientConn) bodyLength() int64 {
	if cc.body.framing == h1.FramingLength {
		return cc.body.left
	}
	return -1
}

// endRequest gives back what the request held beyond the exchange: the
// copy of its head.
func (cc *clientConn) endRequest() {
	if cc.in.headBuf != nil {
		putBuf(cc.in.headBuf)
		cc.in.headBuf = nil
	}
}

// bufferBody reads the whole body for a body rule, at most MaxBodyBytes of
// payload, answering 100 Continue first when the client waits for it. The
// head is moved out of rb first, since reading the body reuses rb.
func (cc *clientConn) bufferBody() error {
	h := &cc.in.head
	limit := cc.s.cfg.MaxBodyBytes
	if h.Flags.Has(h1.FlagContentLength) && h.ContentLength > int64(limit) {
		return answer.BodyTooLarge(limit)
	}
	if cc.body.framing == h1.FramingLength {
		if raw, ok := cc.takeBody(); ok {
			cc.in.body = raw // the usual case: a small body came with the head; no copy
			return nil
		}
	}
	if h.Flags.Has(h1.FlagExpectContinue) && h.Minor == 1 {
		if err := cc.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			return err
		}
		cc.in.continued = true
	}
	if err := cc.keepHead(); err != nil {
		return err
	}
	var raw, data []byte
	for {
		r, d, err := cc.nextBody()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		data = append(data, d...)
		if cc.body.framing == h1.FramingChunked {
			// Chunk framing can outweigh tiny chunks' payload; bounded too.
			raw = append(raw, r...)
		}
		if len(data) > limit || len(raw) > 2*limit+bufSize {
			return answer.BodyTooLarge(limit)
		}
	}
	if data == nil {
		data = emptyBody
	}
	if cc.body.framing != h1.FramingChunked {
		raw = data // a Content-Length body is the same bytes either way
	}
	cc.in.body, cc.in.raw = data, raw
	return nil
}

// shedRead gives back the read buffer of a request that waits for its
// shard, when nothing else is in it (no body, nothing pipelined behind):
// the head, kept for a retry on a fresh connection, moves to a copy of its
// own size.
func (cc *clientConn) shedRead() {
	if cc.rbuf == nil || cc.r != cc.w || !cc.body.done || cc.in.raw != nil || cc.in.headBuf != nil {
		return
	}
	head := append([]byte(nil), cc.rb[cc.r-cc.headN:cc.r]...)
	if _, err := cc.in.head.Parse(head); err != nil {
		return // parsed once already: cannot happen
	}
	if key := cc.x.d.Key; len(key) > 0 {
		cc.x.d.Key = append([]byte(nil), key...) // it pointed into the buffer
	}
	putBuf(cc.rbuf)
	cc.rbuf, cc.rb, cc.r, cc.w = nil, nil, 0, 0
}

// keepHead copies the request head out of rb into a buffer of its own
// and parses it again there, so that rb can be reused for the body.
func (cc *clientConn) keepHead() error {
	if cc.in.headBuf == nil {
		cc.in.headBuf = getBuf()
	}
	start := cc.r - cc.headN
	n := copy(*cc.in.headBuf, cc.rb[start:cc.r])
	_, err := cc.in.head.Parse((*cc.in.headBuf)[:n])
	return err
}

// connectionHasUpgrade reports whether Connection lists "upgrade", which
// makes Upgrade a request to switch protocols (RFC 9110 §7.8).
func connectionHasUpgrade(h *h1.Request) bool {
	for tok := range h.ConnectionTokens() {
		if h1.EqualFold(tok, "upgrade") {
			return true
		}
	}
	return false
}

// clientGone tells whether the client closed its connection (for a request
// held for its owner).
func (cc *clientConn) clientGone() bool { return cc.peerGone() }

// upgradesTo tells whether the request's Upgrade field names protocol.
func upgradesTo(h *h1.Request, protocol string) bool {
	for i := range h.Fields {
		if f := &h.Fields[i]; h1.EqualFold(f.Name, "Upgrade") && bytes.Contains(bytes.ToLower(f.Value), []byte(protocol)) {
			return true
		}
	}
	return false
}

// upgradesOnlyTo tells whether every protocol the Upgrade fields list
// (RFC 9110 §7.8: name["/"version], comma-separated) is one of allowed,
// matched case-insensitively by name.
func upgradesOnlyTo(h *h1.Request, allowed []string) bool {
	seen := false
	for i := range h.Fields {
		f := &h.Fields[i]
		if !h1.EqualFold(f.Name, "Upgrade") {
			continue
		}
		for _, p := range bytes.Split(f.Value, []byte(",")) {
			p = bytes.Trim(p, " \t")
			if len(p) == 0 {
				continue
			}
			name, _, _ := bytes.Cut(p, []byte("/"))
			if !slices.ContainsFunc(allowed, func(a string) bool { return h1.EqualFold(name, a) }) {
				return false
			}
			seen = true
		}
	}
	return seen
}
