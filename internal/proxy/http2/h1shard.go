package http2

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
	"github.com/shard-proxy/shard-proxy/internal/proxy/workers"
)

// A stream whose owner speaks HTTP/1.1 is relayed as one HTTP/1.1
// exchange on a pooled shard connection (package upstream, shared with the
// HTTP/1.1 engine): a goroutine sends the request (its head, then its body
// as the client sends it, chunked when no content-length says otherwise),
// and another (the stream's own) reads the answer and passes it on as
// HEADERS and DATA, reading the shard no faster than the client takes it.

// h1call is a relayed stream's exchange with an HTTP/1.1 shard.
type h1call struct {
	wake chan struct{} // the client sent DATA, trailers or its end
	room chan struct{} // the client took what the answer half held
	gone chan struct{} // closed when the stream closes
	// conn is the shard connection while the exchange uses it; alone: no
	// sender writes to it (the request went whole with its head); read:
	// the answer was read to its end (all three c.w.mu). A stream closing
	// then leaves the connection's deadline alone: nothing waits on it.
	conn        *upstream.Conn
	alone, read bool
	buf         heldBuf // the answer's buffer (the exchange's goroutine)
	// the request as HTTP/1.1 (its head, then the body chunked or not),
	// and whether it may be sent again; set before the exchange starts
	req                 *[]byte
	chunked, repeatable bool
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// responses holds the parsed answer heads (package h1 keeps a Response's
// field slice between uses).
var responses = sync.Pool{New: func() any { return new(h1.Response) }}

// requestHeads holds the buffers requests are written from.
var requestHeads = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// answerBufs holds the buffers HTTP/1.1 answers are read into.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// exchangers run the exchanges, on reused goroutines whose stacks have
// grown already; idle ones are retired after 50 to 100 ms.
var exchangers = workers.Pool[*stream]{Run: (*stream).exchangeHTTP1, Idle: 50 * time.Millisecond}

// errStreamGone: the client's stream closed while the exchange ran.
var errStreamGone = errors.New("the stream closed")

// startHTTP1 writes the request's HTTP/1.1 head while its HTTP/2 head is
// still in the connection's scratch (no copy of it is kept), then runs the
// exchange on an exchanger.
func (s *stream) startHTTP1() {
	c, x := s.c, s.h1
	c.w.Lock()
	x.chunked = s.reqDeclared < 0 && (s.state == stateOpen || len(s.early) > 0 || s.earlyTrailer != nil)
	c.w.Unlock()
	x.repeatable = !x.chunked && s.reqDeclared <= 0 && idempotent(s.head)
	x.req = requestHeads.Get().(*[]byte)
	*x.req = appendH1Request((*x.req)[:0], s.head, x.chunked)
	s.head = nil
	exchangers.Go(s)
}

// exchangeHTTP1 runs the stream's exchange with its HTTP/1.1 owner. A
// request without a body whose method may be repeated goes once more, on
// a fresh connection, when a pooled one turns out closed before any byte
// of the answer (the shard closed it while idle), as the HTTP/1.1 engine
// does.
func (s *stream) exchangeHTTP1() {
	b, x := s.b, s.h1
	head, chunked := *x.req, x.chunked
	defer func() { // every sender has returned
		if cap(head) <= 64<<10 {
			requestHeads.Put(x.req)
		}
		x.req = nil
	}()
	for attempt := 0; ; attempt++ {
		reused, err := s.exchangeOn(upstream.PoolOf(b), head, chunked)
		if errors.Is(err, errStaleConn) && reused && x.repeatable && attempt == 0 {
			continue
		}
		if errors.Is(err, errStaleConn) {
			err = answer.ErrShardDown
		}
		if err != nil && !errors.Is(err, errStreamGone) {
			s.fail(err, b.Name)
		}
		return
	}
}

// errStaleConn: the shard connection closed before any byte of the answer.
var errStaleConn = errors.New("the shard connection closed before its answer")

// idempotent tells a request whose method lets it be sent again.
func idempotent(head []hpack.HeaderField) bool {
	for _, f := range head {
		if f.Name == ":method" {
			return h1.Idempotent(f.Value)
		}
	}
	return false
}

// exchangeOn runs one attempt of the exchange on a connection of pool; it
// tells whether that connection had served before.
func (s *stream) exchangeOn(pool *upstream.Pool, head []byte, chunked bool) (bool, error) {
	c, x := s.c, s.h1
	uc, err := pool.Get(nil)
	if err != nil {
		return false, answer.FromShard(err)
	}
	reused := uc.Reused // read now: once back in the pool, uc is another stream's
	c.w.Lock()
	if s.state == stateClosed || s.answered {
		c.w.Unlock()
		pool.Discard(uc)
		return reused, errStreamGone
	}
	x.conn = uc
	// A request whose client has sent all of it, with no body, is written
	// by this goroutine, at once followed by the wait for its answer; one
	// with a body has a sender beside the reader.
	whole := !chunked && s.state != stateOpen && len(s.early) == 0 && s.earlyTrailer == nil
	x.alone, x.read = whole, false
	c.w.Unlock()
	var sent chan error
	inline := head
	if !whole {
		sent = make(chan error, 1)
		go func() { sent <- s.sendHTTP1(uc, head, chunked) }()
		inline = nil
	}
	reusable, err := s.readHTTP1(uc, inline)
	if err != nil || !reusable {
		_ = uc.NC.SetDeadline(time.Unix(1, 0)) // stops the sender, if it still runs
	}
	var sendErr error
	if sent != nil {
		sendErr = <-sent
	}
	c.w.Lock()
	x.conn = nil
	c.w.Unlock()
	if err == nil && sendErr == nil && reusable {
		pool.Put(uc)
	} else {
		pool.Discard(uc)
	}
	return reused, err
}

// sendHTTP1 writes the request: its head, then its body as it comes.
func (s *stream) sendHTTP1(uc *upstream.Conn, head []byte, chunked bool) error {
	c := s.c
	timeout := c.r.cfg.UpstreamTimeout
	_ = uc.NC.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := uc.NC.Write(head); err != nil {
		return err
	}
	for {
		c.w.Lock()
		data, trailer := s.early, s.earlyTrailer
		s.early, s.earlyTrailer = nil, nil
		ended, closed := s.state != stateOpen, s.state == stateClosed
		c.w.Unlock()
		if closed {
			return errStreamGone
		}
		if len(data) > 0 {
			_ = uc.NC.SetWriteDeadline(time.Now().Add(timeout))
			out := data
			if chunked {
				out = h1.AppendChunk(make([]byte, 0, len(data)+16), data)
			}
			if _, err := uc.NC.Write(out); err != nil {
				return err
			}
			s.req.Credit(len(data))
		}
		if ended {
			if !chunked {
				return nil
			}
			fields := make([][2]string, len(trailer))
			for i, f := range trailer {
				fields[i] = [2]string{f.Name, f.Value}
			}
			_, err := uc.NC.Write(h1.AppendLastChunk(nil, fields))
			return err
		}
		select {
		case <-s.h1.wake:
		case <-s.h1.gone:
			return errStreamGone
		}
	}
}

// appendH1Request writes a relayed request head (already under the header
// policy, see outboundHead) as HTTP/1.1: the request line, Host from
// :authority, the fields but te (a connection option in HTTP/1.1), and the
// body's framing when no content-length gives it.
func appendH1Request(dst []byte, head []hpack.HeaderField, chunked bool) []byte {
	var method, path, authority string
	for _, f := range head {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":path":
			path = f.Value
		case ":authority":
			authority = f.Value
		}
	}
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	if authority != "" {
		dst = append(dst, "Host: "...)
		dst = append(dst, authority...)
		dst = append(dst, "\r\n"...)
	}
	for _, f := range head {
		if strings.HasPrefix(f.Name, ":") || f.Name == "te" || f.Name == "host" && authority != "" {
			continue
		}
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	if chunked {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// readHTTP1 reads the shard's answer and passes it on, after writing head
// when it is not nil (the whole request); it tells whether the connection
// ended the exchange on a message boundary (reusable).
func (s *stream) readHTTP1(uc *upstream.Conn, head []byte) (bool, error) {
	deadline := time.Now().Add(s.c.r.cfg.UpstreamTimeout)
	h := &s.h1.buf
	defer h.release()
	n, err := s.firstBytes(uc, h, head, deadline)
	if err != nil {
		return false, err
	}
	buf := *h.bp
	resp := responses.Get().(*h1.Response)
	defer responses.Put(resp)
	n, err = s.readH1Head(uc, resp, buf, n, deadline)
	if err != nil {
		return false, err
	}
	method := []byte("GET")
	if s.isHead {
		method = []byte("HEAD")
	}
	framing := resp.Framing(method)
	if framing == h1.FramingTunnel {
		return false, answer.ErrBadResponse // a 101 has no meaning on an HTTP/2 stream (RFC 9113 §8.6)
	}
	headLen, _ := resp.Parse(buf[:n]) // parsed already: its length
	rest := buf[headLen:n]
	if !s.answerH1(resp, framing == h1.FramingNone) {
		return false, errStreamGone
	}
	switch framing {
	case h1.FramingNone:
		return len(rest) == 0 && resp.Minor == 1 && !resp.Flags.Has(h1.FlagConnClose), nil
	case h1.FramingLength:
		return s.relayH1Length(uc, h, rest, resp.ContentLength, resp)
	case h1.FramingChunked:
		return s.relayH1Chunked(uc, h, rest, resp)
	}
	return false, s.relayH1UntilClose(uc, h, rest)
}

// heldBuf is an exchange's answer buffer from answerBufs: nil while the
// exchange waits for its client to open its window (see readMore).
type heldBuf struct{ bp *[]byte }

// get returns the buffer, taking one from the pool if none is held.
func (h *heldBuf) get() []byte {
	if h.bp == nil {
		h.bp = answerBufs.Get().(*[]byte)
	}
	return *h.bp
}

// Take implements sock.Buffer: the first bytes of an answer are read into
// a buffer taken only once they are there.
func (h *heldBuf) Take() []byte { return h.get() }

// Give implements sock.Buffer.
func (h *heldBuf) Give() { h.release() }

var _ sock.Buffer = (*heldBuf)(nil)

// release gives the buffer back; nothing in it is still needed.
func (h *heldBuf) release() {
	if h.bp != nil {
		answerBufs.Put(h.bp)
		h.bp = nil
	}
}

// readMore reads the next bytes of the answer's body, once everything read
// before was passed on: at most what the client's stream window allows
// (what is read is then sent at once, not copied to wait), after waiting
// for the client to open it holding no buffer. A client that stops reading
// costs its exchange a goroutine, not 32 KiB of answer.
func (s *stream) readMore(uc *upstream.Conn, h *heldBuf) ([]byte, error) {
	for {
		c := s.c
		c.w.Lock()
		win, closed := s.resp.Win, s.state == stateClosed
		c.w.Unlock()
		if closed {
			return nil, errStreamGone
		}
		if win > 0 {
			buf := h.get()
			buf = buf[:min(int64(len(buf)), win)]
			m, err := s.readShard(uc, buf, time.Now().Add(s.c.r.cfg.UpstreamTimeout))
			return buf[:m], err
		}
		h.release()
		select { // a window update pokes room (the answer half's OnDrain)
		case <-s.h1.room:
		case <-s.h1.gone:
			return nil, errStreamGone
		}
	}
}

// firstBytes reads the first bytes of the shard's answer, by deadline,
// into h, which takes its buffer only once they are there (a shard that
// thinks costs the exchange its goroutine, not 16 KiB more); with head, it
// writes the request first. It tells how many bytes h holds. A shard
// closing the connection (or refusing the request's bytes) before any
// byte of the answer is errStaleConn.
func (s *stream) firstBytes(uc *upstream.Conn, h *heldBuf, head []byte, deadline time.Time) (int, error) {
	_ = uc.NC.SetReadDeadline(deadline)
	if s.isGone() { // looked at after the deadline is set: see readShard
		return 0, errStreamGone
	}
	var n int
	var err error
	if head != nil {
		n, err = uc.WriteReadLean(head, h, deadline)
	} else {
		n, err = uc.ReadLean(h)
	}
	switch {
	case n > 0:
		return n, nil
	case s.isGone():
		return 0, errStreamGone
	case answer.IsTimeout(err):
		return 0, answer.ErrShardTimeout
	}
	return 0, errStaleConn
}

// readH1Head reads heads until the final one, relaying 1xx answers; buf
// holds n bytes of them already, and deadline bounds the whole head.
func (s *stream) readH1Head(uc *upstream.Conn, resp *h1.Response, buf []byte, n int, deadline time.Time) (int, error) {
	for {
		k, err := resp.Parse(buf[:n])
		if err == nil && !resp.Informational() {
			return n, nil
		}
		if err == nil { // 1xx: passed on, and the next head follows
			if resp.Status == 101 {
				return 0, answer.ErrBadResponse
			}
			s.interimH1(resp)
			n = copy(buf, buf[k:n])
			continue
		}
		if !errors.Is(err, h1.ErrIncomplete) || n == len(buf) {
			return 0, answer.ErrBadResponse
		}
		m, err := s.readShard(uc, buf[n:], deadline)
		if err != nil {
			return 0, err
		}
		n += m
	}
}

// readShard reads from the shard until deadline, giving up when the
// stream closes. Closing the stream moves the connection's deadline to the
// past after it closes h1.gone; gone is looked at after the deadline is set
// here, so one of the two always wakes the read.
func (s *stream) readShard(uc *upstream.Conn, p []byte, deadline time.Time) (int, error) {
	_ = uc.NC.SetReadDeadline(deadline)
	if s.isGone() {
		return 0, errStreamGone
	}
	m, err := uc.NC.Read(p)
	if m > 0 {
		return m, nil
	}
	if s.isGone() {
		return 0, errStreamGone
	}
	if answer.IsTimeout(err) {
		return 0, answer.ErrShardTimeout
	}
	return 0, answer.ErrShardDown
}

// isGone tells whether the client's stream closed.
func (s *stream) isGone() bool {
	select {
	case <-s.h1.gone:
		return true
	default:
		return false
	}
}

// answerHead is the scratch an HTTP/1.1 answer head is turned into HPACK
// fields in: the fields, and their names in lower case. The values point
// into the answer's buffer: the fields live only until they are encoded,
// under the client connection's lock.
type answerHead struct {
	fields []hpack.HeaderField
	names  []byte
}

var answerHeads = sync.Pool{New: func() any { return new(answerHead) }}

// answerFields turns an HTTP/1.1 answer head into HPACK fields under the
// header policy: hop-by-hop fields and those Connection names dropped,
// names in lower case, the proxy's X-Shard. They are valid until ah goes
// back to answerHeads, and while resp's buffer is unchanged.
func (s *stream) answerFields(ah *answerHead, resp *h1.Response) []hpack.HeaderField {
	size := 0
	for i := range resp.Fields {
		size += len(resp.Fields[i].Name)
	}
	if cap(ah.names) < size {
		ah.names = make([]byte, 0, size) // the names' strings must not move
	}
	names := ah.names[:0]
	fields := append(ah.fields[:0], hpack.HeaderField{Name: ":status", Value: statusText(resp.Status)})
	for i := range resp.Fields {
		f := &resp.Fields[i]
		switch header.Classify(f.Name) {
		case header.HopByHop, header.ShardName:
			continue
		}
		if resp.HopByHop(f.Name) {
			continue
		}
		start := len(names)
		for _, c := range f.Name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			names = append(names, c)
		}
		fields = append(fields, hpack.HeaderField{Name: unsafeString(names[start:]), Value: unsafeString(f.Value)})
	}
	fields = append(fields, hpack.HeaderField{Name: header.ShardLower, Value: s.b.Name})
	ah.fields, ah.names = fields, names
	return fields
}

// done gives ah back, its fields encoded.
func (ah *answerHead) done() {
	clear(ah.fields)
	ah.fields = ah.fields[:0]
	if cap(ah.names) > 16<<10 {
		ah.names = nil
	}
	answerHeads.Put(ah)
}

// statusText is a status code's three digits.
func statusText(code int) string {
	if code == 200 {
		return "200"
	}
	return strconv.Itoa(code)
}

// unsafeString is b as a string, without a copy: b must stay unchanged
// while the string is used.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// interimH1 passes a 1xx answer on.
func (s *stream) interimH1(resp *h1.Response) {
	ah := answerHeads.Get().(*answerHead)
	defer ah.done()
	fields := s.answerFields(ah, resp)
	s.c.w.Lock()
	defer s.c.w.Unlock()
	if s.state != stateClosed && !s.answered {
		s.c.w.Headers(s.id, fields, false)
		s.c.w.Signal()
	}
}

// answerH1 sends the final head; false when the stream closed meanwhile.
func (s *stream) answerH1(resp *h1.Response, end bool) bool {
	ah := answerHeads.Get().(*answerHead)
	defer ah.done()
	fields := s.answerFields(ah, resp)
	c := s.c
	c.w.Lock()
	defer c.w.Unlock()
	if s.state == stateClosed || s.answered {
		return false
	}
	s.answered, s.status = true, resp.Status
	s.ttfb = time.Since(s.d.Start)
	c.w.Headers(s.id, fields, end)
	c.w.Signal()
	s.h1.read = end
	if end {
		s.resp.Closed = true
		s.ended()
		return true
	}
	s.resp.ID = s.id
	return true
}

// pass pushes a piece of the answer's body to the client and waits until
// the client took it (backpressure: the shard is read no faster). It pushes
// no more at a time than the client's stream window allows: what waits
// for the window stays in the caller's buffer, not in a copy.
func (s *stream) pass(data []byte, end bool) error {
	s.bytesOut.Add(int64(len(data)))
	c := s.c
	for {
		c.w.Lock()
		win, held, closed := s.resp.Win, len(s.resp.Pend), s.state == stateClosed
		s.h1.read = end // the answer's last bytes: the shard is read no more
		c.w.Unlock()
		if closed {
			return errStreamGone
		}
		if held == 0 {
			if len(data) == 0 && !end {
				return nil // all of it is out
			}
			n := 0
			if win > 0 {
				n = int(min(int64(len(data)), win))
			}
			if n > 0 || len(data) == 0 {
				last := n == len(data)
				s.resp.Push(data[:n], end && last)
				data = data[n:]
				if last && end {
					return nil // queued with the end: the stream closes when it is out
				}
				continue
			}
		}
		select { // the answer half's OnDrain pokes room when it is empty after a flush
		case <-s.h1.room:
		case <-s.h1.gone:
			return errStreamGone
		}
	}
}

// relayH1Length passes a body of exactly n bytes.
func (s *stream) relayH1Length(uc *upstream.Conn, h *heldBuf, rest []byte, n int64, resp *h1.Response) (bool, error) {
	piece := rest[:min(int64(len(rest)), n)]
	extra := len(rest) > len(piece)
	for {
		n -= int64(len(piece))
		if err := s.pass(piece, n == 0); err != nil {
			return false, err
		}
		if n == 0 {
			return !extra && resp.Minor == 1 && !resp.Flags.Has(h1.FlagConnClose), nil
		}
		p, err := s.readMore(uc, h)
		if err != nil {
			return false, err
		}
		piece = p[:min(int64(len(p)), n)]
		extra = int64(len(p)) > n
	}
}

// relayH1Chunked passes a chunked body's payload, then its trailers.
func (s *stream) relayH1Chunked(uc *upstream.Conn, h *heldBuf, rest []byte, resp *h1.Response) (bool, error) {
	var ch h1.Chunked
	var framing []byte // since the last payload: at the end, the last chunk and the trailers
	p := rest
	for {
		for len(p) > 0 {
			k, data, done, err := ch.Next(p)
			if err != nil {
				return false, answer.ErrBadResponse
			}
			if data != nil {
				framing = framing[:0] // a call ends with its payload
			} else {
				framing = append(framing, p[:k]...)
			}
			p = p[k:]
			if done {
				s.resp.Finish(trailerFields(framing))
				return len(p) == 0 && resp.Minor == 1 && !resp.Flags.Has(h1.FlagConnClose), nil
			}
			if len(data) > 0 {
				if err := s.pass(data, false); err != nil {
					return false, err
				}
			}
		}
		var err error
		if p, err = s.readMore(uc, h); err != nil {
			return false, err
		}
	}
}

// trailerFields reads the trailer fields out of a chunked body's last
// framing bytes (the CRLF after the last payload, the last chunk's line,
// the trailer lines, the final CRLF; h1.Chunked checked their syntax), as
// HPACK fields under the header policy.
func trailerFields(framing []byte) []hpack.HeaderField {
	var fields []hpack.HeaderField
	for name, value := range h1.TrailerSection(framing) {
		if c := header.Classify(name); c != header.HopByHop && c != header.ShardName {
			fields = append(fields, hpack.HeaderField{Name: string(bytes.ToLower(name)), Value: string(value)})
		}
	}
	return fields
}

// relayH1UntilClose passes a body that ends when the shard closes.
func (s *stream) relayH1UntilClose(uc *upstream.Conn, h *heldBuf, rest []byte) error {
	p := rest
	for {
		if len(p) > 0 {
			if err := s.pass(p, false); err != nil {
				return err
			}
		}
		var err error
		p, err = s.readMore(uc, h)
		if errors.Is(err, answer.ErrShardDown) {
			return s.pass(nil, true) // the close ends the body
		}
		if err != nil {
			return err
		}
	}
}
