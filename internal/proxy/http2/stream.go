package http2

import (
	"errors"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// stream is one relayed stream: the client's stream and, once opened,
// the shard's. Lock order: the client connection's w.mu, then the shard
// connection's; never the other way.
type stream struct {
	c    *clientConn
	id   uint32
	req  half // client -> shard
	resp half // shard -> client
	grpc bool
	key  string              // the shard key, kept for a stream held or dialled later
	b    *route.Backend      // the owner, once the stream goes there (c.w.mu)
	head []hpack.HeaderField // the head for the shard, until sent
	live *route.Live
	// d is the stream's routing record: written by whichever goroutine
	// routes the stream (the reader, or one holding it for its owner) until
	// b is set under c.w.mu; closed reads it after that.
	d route.Decision

	grpcTimeout time.Duration
	isHead      bool // a HEAD request: its answer has no body

	// The answer's declared length and the DATA so far; only the shard
	// connection's reader uses them.
	respDeclared, respLen int64

	// guarded by up.w.mu: the shard's stream is closed or forgotten
	shardGone bool
	retries   int // of open, on a connection that went away meanwhile

	// guarded by c.w.mu
	up           *shardConn
	upID         uint32
	early        []byte              // DATA received before the stream opened on the shard
	earlyTrailer []hpack.HeaderField // and trailers
	answered     bool                // a final head went to the client
	status       int                 // counted for the shard; 0: not counted
	done         bool
	rstDone      bool  // the client's stream was reset (by either side)
	reqEnded     bool  // the client sent END_STREAM
	reqLen       int64 // DATA bytes received
	reqDeclared  int64 // content-length, -1 if none
	headTimer    *time.Timer
	deadline     *time.Timer
	gone         chan struct{} // closed when done, for a held stream
}

// onHeaders takes a HEADERS frame from the client: a new request, or the
// trailers of one.
func (c *clientConn) onHeaders(f *block) error {
	id := f.id
	c.w.mu.Lock()
	if s := c.streams[id]; s != nil {
		c.w.mu.Unlock()
		return c.onTrailers(s, f)
	}
	if id%2 == 0 {
		c.w.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if id <= c.lastID {
		// A stream we ended or refused: its trailers may have been on
		// their way (RFC 9113 §5.1); the block was decoded, and is dropped.
		c.w.mu.Unlock()
		return nil
	}
	c.lastID = id
	if c.goAway || len(c.streams) >= MaxClientStreams || f.invalid {
		code := http2.ErrCodeRefusedStream
		if f.invalid {
			code = http2.ErrCodeProtocol
		}
		c.w.rst(id, code)
		c.w.signal()
		c.w.mu.Unlock()
		return nil
	}
	s := c.newStream(id, f)
	c.streams[id] = s
	c.opened++
	c.w.mu.Unlock()
	s.route(f)
	return nil
}

func (c *clientConn) newStream(id uint32, f *block) *stream {
	s := &stream{c: c, id: id, reqDeclared: -1, reqEnded: f.StreamEnded()}
	s.d.Begin(route.HTTP2, time.Now())
	s.req = half{src: c.w, srcID: id, recvWin: streamWindow, connCredit: true, srcDone: s.reqEnded}
	s.resp = half{dst: c.w, win: int64(c.w.initWin), onClose: s.closed} // id: once answered
	return s
}

// onTrailers passes the client's trailers on, after its data.
func (c *clientConn) onTrailers(s *stream, f *block) error {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || f.invalid || f.truncated {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	c.w.mu.Lock()
	if s.reqEnded { // half-closed (remote): a stream error (§5.1)
		c.w.mu.Unlock()
		c.streamError(s.id, http2.ErrCodeStreamClosed)
		return nil
	}
	s.reqEnded, s.req.srcDone = true, true
	bad := s.reqDeclared >= 0 && s.reqLen != s.reqDeclared
	trailer := appendAnswerFields(nil, f.RegularFields(), false)
	if !bad && s.up == nil {
		s.earlyTrailer = trailer
		c.w.mu.Unlock()
		return nil
	}
	c.w.mu.Unlock()
	if bad {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	s.req.finish(trailer)
	return nil
}

// route checks the request and takes its routing step, then sends it to
// its owner, or holds it for a not-ready one.
func (s *stream) route(f *block) {
	c := s.c
	rq, err := parseRequest(f)
	s.grpc, s.grpcTimeout, s.isHead = rq.grpc, rq.timeout, rq.method == "HEAD"
	if f.truncated {
		err = answer.ErrHeaderTooLarge
	}
	if errors.Is(err, errMalformed) {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return
	}
	if err != nil {
		s.fail(err, "")
		return
	}
	c.w.mu.Lock()
	s.reqDeclared = rq.length
	c.w.mu.Unlock()
	sc := keys.AcquireScratch()
	err = c.r.router.Route(&s.d, keyRequest{fields: f.Fields, path: rq.path, query: rq.query}, sc)
	s.key = string(s.d.Key)
	s.d.Key = unsafe.Slice(unsafe.StringData(s.key), len(s.key)) // the scratch goes back
	keys.ReleaseScratch(sc)
	switch {
	case errors.Is(err, route.ErrMustWait):
		s.head = c.outboundHead(nil, f, rq) // kept while it waits
		go s.awaitOwner()
	case err != nil:
		s.failRouting(err)
	default:
		// The head is built in the connection's scratch: on the usual path
		// it is sent before route returns; a stream that must wait for a
		// connection copies it.
		s.head = c.outboundHead(c.head[:0], f, rq)
		c.head = s.head[:0]
		s.toOwner()
	}
}

// failRouting answers a stream whose routing step failed; a not-ready
// owner is named, and counted.
func (s *stream) failRouting(err error) {
	if s.d.Status == 0 || s.d.Backend == nil {
		s.fail(err, "")
		return
	}
	s.c.w.mu.Lock()
	if !s.done {
		s.b = s.d.Backend // counted for the owner when the stream closes
	}
	s.c.w.mu.Unlock()
	s.fail(err, s.d.Shard.Name)
}

// toOwner sends the stream to its owner, s.d.Backend.
func (s *stream) toOwner() {
	b := s.d.Backend
	if b.Protocol != watch.H2C {
		s.refuse()
		return
	}
	s.head = appendPrevious(s.head, s.d.Previous, s.d.PreviousAddr)
	c, r := s.c, s.c.r.router
	c.w.mu.Lock()
	if s.done {
		c.w.mu.Unlock()
		return
	}
	s.b = b
	c.w.mu.Unlock()
	live := r.Track(s.key, b.Name, s.moved) // may end the stream at once: no lock held
	c.w.mu.Lock()
	if s.done {
		c.w.mu.Unlock()
		r.Untrack(live)
		return
	}
	s.live = live
	c.w.mu.Unlock()
	if up := poolOf(c.r, b).usable(); up != nil {
		s.open(up)
		return
	}
	s.head = slices.Clone(s.head)
	go s.dialAndOpen()
}

// awaitOwner holds the stream for its owner to become ready.
func (s *stream) awaitOwner() {
	gone := make(chan struct{})
	s.c.w.mu.Lock()
	if s.done {
		s.c.w.mu.Unlock()
		return
	}
	s.gone = gone
	s.c.w.mu.Unlock()
	switch err := s.c.r.router.Wait(&s.d, gone, nil); {
	case err == nil:
		s.toOwner()
	case errors.Is(err, answer.ErrClientGone):
	default:
		s.failRouting(err)
	}
}

// dialAndOpen opens the stream on a new connection to the shard.
func (s *stream) dialAndOpen() {
	up, err := poolOf(s.c.r, s.b).get()
	if err != nil {
		s.fail(err, s.b.Name) // counted when the stream closes
		return
	}
	s.open(up)
}

// refuse turns a stream away unprocessed (its owner speaks HTTP/1.1,
// which this connection cannot reach) and asks the client to reconnect.
func (s *stream) refuse() {
	c := s.c
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	s.status = 0
	s.respReset(http2.ErrCodeRefusedStream)
	c.sendGoAway()
}

// fail answers the stream with the proxy's own error, if it can still.
func (s *stream) fail(err error, shard string) {
	c := s.c
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if s.done {
		return
	}
	s.cancelShard()
	if s.answered { // too late for an answer: end the stream
		s.endAnswered(err)
		return
	}
	s.answer(err, shard)
}

// answer sends the proxy's own answer; c.w.mu held.
func (s *stream) answer(err error, shard string) {
	a := answer.For(err, shard)
	s.answered, s.status = true, a.Status
	w := s.c.w
	if s.grpc {
		fields := []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: strconv.Itoa(a.GRPCCode())}, {Name: "grpc-message", Value: a.GRPCMessage()}}
		if shard != "" {
			fields = append(fields, hpack.HeaderField{Name: header.ShardLower, Value: shard})
		}
		w.headers(s.id, fields, true)
		s.resp.closed = true
		w.signal()
		s.closed()
		return
	}
	s.resp.id = s.id
	body := a.JSON()
	fields := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(a.Status)}, {Name: "content-type", Value: "application/json"},
		{Name: "content-length", Value: strconv.Itoa(len(body))}}
	if a.RetryAfter {
		fields = append(fields, hpack.HeaderField{Name: "retry-after", Value: "1"})
	}
	if shard != "" {
		fields = append(fields, hpack.HeaderField{Name: header.ShardLower, Value: shard})
	}
	w.headers(s.id, fields, false)
	s.resp.pend, s.resp.end = body, true
	s.resp.flush()
	w.signal()
}

// endAnswered ends a stream whose answer has started: a gRPC call gets
// its status in trailers; anything else is reset, so that the client
// cannot take a cut body for a whole one. c.w.mu held.
func (s *stream) endAnswered(err error) {
	if !s.grpc {
		s.respReset(http2.ErrCodeInternal)
		return
	}
	a := answer.For(err, s.b.Name)
	s.resp.end = true
	s.resp.trailer = []hpack.HeaderField{{Name: "grpc-status", Value: strconv.Itoa(a.GRPCCode())},
		{Name: "grpc-message", Value: a.GRPCMessage()}}
	s.resp.flush()
}

// moved ends the stream: its key now belongs to another shard.
func (s *stream) moved() { s.fail(answer.ErrOwnerMoved, s.shardName()) }

func (s *stream) shardName() string {
	if s.b == nil {
		return ""
	}
	return s.b.Name
}

// respReset resets the client's stream with code; c.w.mu held.
func (s *stream) respReset(code http2.ErrCode) {
	if s.done {
		return
	}
	if !s.resp.closed {
		s.c.w.rst(s.id, code)
		s.c.w.signal()
	}
	s.respGone()
}

// respGone ends the client's stream without a word: the client reset it,
// or its connection is gone; c.w.mu held.
func (s *stream) respGone() {
	if s.done {
		return
	}
	s.rstDone = true
	s.resp.abandon()
	s.closed()
}

// cancelShard ends the shard's stream: a reset unless both sides already
// ended it, what still waits for the shard dropped, and the stream
// forgotten on that connection; c.w.mu held.
func (s *stream) cancelShard() {
	up := s.up
	if up == nil {
		return
	}
	up.w.mu.Lock()
	if !s.shardGone && !(s.req.closed && s.resp.srcDone) && !up.w.dead {
		up.w.rst(s.upID, http2.ErrCodeCancel)
		up.w.signal()
	}
	s.shardGone = true
	dropped := len(s.req.pend)
	s.req.pend, s.req.closed = nil, true
	up.forget(s.upID)
	up.w.mu.Unlock()
	if dropped > 0 {
		s.c.w.giveBack(dropped)
	}
}

// closed runs once the client's stream is closed on our side (END_STREAM
// or RST_STREAM sent): it ends the shard's stream, stops the timers and
// counts the request; c.w.mu held.
func (s *stream) closed() {
	if s.done {
		return
	}
	s.done = true
	c := s.c
	delete(c.streams, s.id)
	if len(c.streams) == 0 {
		c.idle = time.Now()
		c.idleDeadline() // wakes the reader, blocked without a deadline
	}
	if !s.reqEnded && !s.rstDone {
		// A complete answer before the whole request: the client may stop
		// sending (RFC 9113 §8.1).
		c.w.rst(s.id, http2.ErrCodeNo)
		c.w.signal()
	}
	s.cancelShard()
	if len(s.early) > 0 {
		c.w.giveBack(len(s.early))
		s.early = nil
	}
	stopTimer(s.headTimer)
	stopTimer(s.deadline)
	if s.gone != nil {
		close(s.gone)
	}
	c.r.router.Untrack(s.live)
	if s.b != nil {
		s.d.Status = s.status
		c.r.router.Done(&s.d)
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
