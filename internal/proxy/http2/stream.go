package http2

import (
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2wire"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// streamState is a client stream's state (RFC 9113 §5.1) as the relay
// keeps it. Idle streams are not kept (a HEADERS frame opens one), nor is
// half-closed (local): when the relay ends its side first (a complete
// answer before the whole request), it resets the client's side at once
// with NO_ERROR (§8.1), which closes the stream.
type streamState uint8

const (
	// stateOpen: both sides may send.
	stateOpen streamState = iota
	// stateHalfClosedRemote: the client sent END_STREAM; only the answer
	// flows, and DATA from the client is a stream error (STREAM_CLOSED).
	stateHalfClosedRemote
	// stateClosed: both sides ended, or a RST_STREAM went either way; the
	// stream is out of its connection's map, and its shard stream ended.
	stateClosed
)

// stream is one relayed stream: the client's stream and, once opened,
// the shard's. Lock order: the client connection's w.mu, then the shard
// connection's; never the other way.
//
// The fields fall in four groups by who may touch them: set before the
// stream is shared and read-only after; the routing record, owned by
// whichever goroutine routes the stream until b is set; fields under the
// shard connection's lock (up.w.mu); and fields under the client
// connection's lock (c.w.mu). The two halves (req, resp) say in half's
// doc which lock guards which of their fields.
type stream struct {
	// set before the stream is shared
	c    *clientConn
	id   uint32
	req  h2wire.Half // client -> shard
	resp h2wire.Half // shard -> client

	// the routing, owned by the goroutine that routes the stream (the
	// client connection's reader, or one holding the stream for its owner
	// or dialling for it) until b is set under c.w.mu
	grpc        bool
	grpcTimeout time.Duration
	isHead      bool                // a HEAD request: its answer has no body
	key         string              // the shard key, kept for a stream held or dialled later
	head        []hpack.HeaderField // the head for the shard, until sent
	d           route.Decision      // the routing record; close reads it once b is set
	retries     int                 // of open, on a connection that went away meanwhile

	// owned by the shard connection's reader: the answer's declared length
	// and the DATA so far
	respDeclared, respLen int64

	// guarded by up.w.mu: the shard's stream is closed or forgotten
	shardGone bool

	// a body rule's wait: kreq, the head the rules read again once the
	// body is in (set before bodyWait, then owned by the goroutine that
	// routes); bodyWait and withheld guarded by c.w.mu (see buffer)
	kreq      keyRequest
	bodyWait  bool
	withheld  int
	lastBody  time.Time
	bodyTimer *time.Timer

	// guarded by c.w.mu
	b            *route.Backend // the owner, once the stream goes there
	h1           *h1call        // the exchange, when the owner speaks HTTP/1.1
	live         *route.Live
	state        streamState
	up           *shardConn
	upID         uint32
	early        []byte              // DATA received before the stream opened on the shard
	earlyTrailer []hpack.HeaderField // and trailers
	answered     bool                // a final head went to the client
	status       int                 // counted for the shard; 0: not counted
	reqLen       int64               // DATA bytes received
	reqDeclared  int64               // content-length, -1 if none
	headTimer    *time.Timer
	deadline     *time.Timer
	gone         chan struct{} // closed when done, for a held stream
	// the record's side (record.go): routing while a goroutine other than
	// close may still write d; what close copies into d for Done
	routing, recorded bool
	errMsg            string        // the proxy's own answer's message
	ttfb              time.Duration // to the answer's head
	grpcCode          int           // the call's grpc-status + 1; 0: none yet

	bytesOut atomic.Int64 // answer body bytes relayed (shard readers add)
}

// route checks the request and takes its routing step, then sends it to
// its owner, or holds it for a not-ready one.
func (s *stream) route(f *h2hpack.Block) {
	c := s.c
	rq, err := h2hpack.ParseRequest(f)
	s.grpc, s.grpcTimeout, s.isHead = rq.GRPC, rq.Timeout, rq.Method == "HEAD"
	s.describe(&rq, false)
	handedOff := false
	defer func() {
		if !handedOff {
			s.routeEnd()
		}
	}()
	if f.Truncated {
		err = answer.ErrHeaderTooLarge
	}
	if errors.Is(err, h2hpack.ErrMalformed) {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return
	}
	if err != nil {
		s.fail(err, "")
		return
	}
	if limit := c.r.cfg.MaxRequestBodyBytes; limit > 0 && rq.Length > limit {
		s.fail(answer.BodyTooLarge(int(min(limit, math.MaxInt32))), "") // before any shard
		return
	}
	c.w.Lock()
	s.reqDeclared = rq.Length
	c.w.Unlock()
	kr := keyRequest{fields: f.Fields, path: rq.Path, query: rq.Query}
	if s.grpc || rq.Length == 0 || f.StreamEnded() {
		kr.body = emptyBody // no body to wait for (body rules never read protobuf)
	}
	err = s.routeStep(kr, nil)
	s.describe(&rq, true) // the tracer has decided: describe a sampled request
	switch {
	case errors.Is(err, keys.ErrNeedBody):
		handedOff = s.awaitBody(f, rq, kr)
	case errors.Is(err, route.ErrMustWait):
		s.head = c.outboundHead(nil, f, rq) // kept while it waits
		handedOff = true
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

var emptyBody = []byte{}

// routeStep takes the routing step for req, with loadBody for a body rule
// (nil: the body is not in yet), and keeps the key past the scratch.
func (s *stream) routeStep(req keys.Request, loadBody func() error) error {
	sc := keys.AcquireScratch()
	err := s.c.r.router.Route(&s.d, req, sc, loadBody)
	s.key = string(s.d.Key)
	s.d.Key = unsafe.Slice(unsafe.StringData(s.key), len(s.key)) // the scratch goes back
	keys.ReleaseScratch(sc)
	return err
}

// failRouting answers a stream whose routing step failed; a not-ready
// owner is named, and counted.
func (s *stream) failRouting(err error) {
	if s.d.Status != 0 { // an owner not ready: counted for it when the stream closes
		s.c.w.Lock()
		if s.state != stateClosed {
			s.b = s.d.Backend
		}
		s.c.w.Unlock()
	}
	s.fail(err, "")
}

// toOwner sends the stream to its owner, s.d.Backend.
func (s *stream) toOwner() {
	b := s.d.Backend
	s.head = appendPrevious(s.head, s.d.Previous, s.d.PreviousAddr)
	s.head = setTraceparent(s.head, s.d.Trace.OutgoingString())
	if b.TLS {
		schemeHTTPS(s.head)
	}
	c, r := s.c, s.c.r.router
	r.Commit(&s.d)
	c.w.Lock()
	if s.state == stateClosed {
		c.w.Unlock()
		return
	}
	s.b = b
	if b.Protocol != watch.H2C {
		s.h1 = &h1call{wake: make(chan struct{}, 1), room: make(chan struct{}, 1), gone: make(chan struct{})}
		s.resp.OnDrain = func() { poke(s.h1.room) }
	}
	c.w.Unlock()
	live := r.Track(s.key, b.Name, s.moved) // may end the stream at once: no lock held
	c.w.Lock()
	switch {
	case s.state == stateClosed:
		c.w.Unlock()
		r.Untrack(live)
		return
	case s.answered: // the key moved meanwhile: no shard stream to open
		s.live = live // untracked when the stream closes
		c.w.Unlock()
		return
	}
	s.live = live
	c.w.Unlock()
	if b.Protocol != watch.H2C {
		s.startHTTP1()
		return
	}
	if up := poolOf(c.r, b).usable(); up != nil {
		s.open(up)
		return
	}
	s.head = slices.Clone(s.head)
	go s.dialAndOpen()
}

// awaitOwner holds the stream for its owner to become ready.
func (s *stream) awaitOwner() {
	defer s.routeEnd()
	gone := make(chan struct{})
	s.c.w.Lock()
	if s.state == stateClosed {
		s.c.w.Unlock()
		return
	}
	s.gone = gone
	s.c.w.Unlock()
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

// fail answers the stream with the proxy's own error, if it can still.
func (s *stream) fail(err error, shard string) {
	c := s.c
	c.w.Lock()
	defer c.w.Unlock()
	if s.state == stateClosed {
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
	s.answered, s.status, s.errMsg = true, a.Status, a.Body.Error
	if s.grpc {
		s.grpcCode = a.GRPCCode() + 1
	}
	w := s.c.w
	status := a.Status
	if s.grpc {
		status = http.StatusOK // the status is in grpc-status
	}
	fields := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)}}
	fields = appendFields(fields, a.Fields(nil, s.grpc))
	if s.grpc {
		w.Headers(s.id, fields, true)
		s.resp.Closed = true
		w.Signal()
		s.ended()
		return
	}
	s.resp.ID = s.id
	body := a.JSON()
	s.bytesOut.Store(int64(len(body)))
	fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	w.Headers(s.id, fields, false)
	s.resp.Pend, s.resp.End = body, true
	s.resp.Flush()
	w.Signal()
}

// appendFields appends answer fields as HPACK fields.
func appendFields(dst []hpack.HeaderField, fields []answer.Field) []hpack.HeaderField {
	for _, f := range fields {
		dst = append(dst, hpack.HeaderField{Name: f.Name, Value: f.Value})
	}
	return dst
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
	s.errMsg, s.grpcCode = a.Body.Error, a.GRPCCode()+1
	s.resp.End = true
	s.resp.Trailer = appendFields(nil, a.Trailers(nil))
	s.resp.Flush()
}

// moved ends the stream: its key now belongs to another shard.
func (s *stream) moved() { s.failOwner(answer.ErrOwnerMoved) }

// failOwner fails the stream with err, naming its owner (read under
// c.w.mu, which guards s.b).
func (s *stream) failOwner(err error) {
	s.c.w.Lock()
	name := s.shardName()
	s.c.w.Unlock()
	s.fail(err, name)
}

func (s *stream) shardName() string {
	if s.b == nil {
		return ""
	}
	return s.b.Name
}

// respReset resets the client's stream with code; c.w.mu held.
func (s *stream) respReset(code http2.ErrCode) {
	if s.state == stateClosed {
		return
	}
	if !s.resp.Closed {
		s.c.w.RST(s.id, code)
		s.c.w.Signal()
	}
	s.respGone()
}

// respGone ends the client's stream without a word: the client reset it,
// or its connection is gone; c.w.mu held.
func (s *stream) respGone() {
	if s.state == stateClosed {
		return
	}
	s.resp.Abandon()
	s.close(true)
}

// cancelShard ends the shard's stream: a reset unless both sides already
// ended it, what still waits for the shard dropped, and the stream
// forgotten on that connection; c.w.mu held.
func (s *stream) cancelShard() {
	up := s.up
	if up == nil {
		return
	}
	up.w.Lock()
	if !s.shardGone && !(s.req.Closed && s.resp.SrcDone) && !up.w.Dead {
		up.w.RST(s.upID, http2.ErrCodeCancel)
		up.w.Signal()
	}
	s.shardGone = true
	s.resp.ReleaseGrowth()
	dropped := len(s.req.Pend)
	s.req.Pend, s.req.Closed = nil, true
	up.forget(s.upID)
	up.w.Unlock()
	if dropped > 0 {
		s.c.w.GiveBack(dropped)
	}
}

// ended closes the stream once the relay queued its END_STREAM; c.w.mu
// held.
func (s *stream) ended() { s.close(false) }

// endRemote takes the client's END_STREAM; c.w.mu held.
func (s *stream) endRemote() {
	if s.state == stateOpen {
		s.state = stateHalfClosedRemote
	}
	s.req.SrcDone = true
	if s.h1 != nil {
		poke(s.h1.wake)
	}
}

// close closes the client's stream on our side (END_STREAM queued, or,
// with reset, RST_STREAM sent or received): it ends the shard's stream,
// stops the timers and counts the request; c.w.mu held.
func (s *stream) close(reset bool) {
	if s.state == stateClosed {
		return
	}
	wasOpen := s.state == stateOpen
	s.state = stateClosed
	c := s.c
	if x := s.h1; x != nil {
		close(x.gone) // the exchange's goroutines stop
		if x.conn != nil && !(x.alone && x.read) {
			_ = x.conn.NC.SetDeadline(time.Unix(1, 0))
		}
	}
	delete(c.streams, s.id)
	if len(c.streams) == 0 {
		c.idle = time.Now()
		c.idleDeadline() // wakes the reader, blocked without a deadline
	}
	if wasOpen {
		c.noteReset(s.id) // the client may still be sending on it
	}
	if wasOpen && !reset {
		// A complete answer before the whole request: the client may stop
		// sending (RFC 9113 §8.1).
		c.w.RST(s.id, http2.ErrCodeNo)
		c.w.Signal()
	}
	s.cancelShard()
	waited := s.bodyWait // no goroutine routes it: the body never came
	s.endBodyWait()
	if len(s.early) > 0 {
		// What a body rule kept was given back as it came (prepaid).
		c.w.GiveBack(len(s.early) - int(min(s.req.Prepaid, int64(len(s.early)))))
		s.early = nil
	}
	stopTimer(s.headTimer)
	stopTimer(s.deadline)
	if s.gone != nil {
		close(s.gone)
	}
	c.r.router.Untrack(s.live)
	if s.b != nil || !s.routing || waited {
		s.record()
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// open sends the stream's head to the shard over u, with what the client
// sent meanwhile, and starts the stream's timers.
func (s *stream) open(u *shardConn) {
	c := s.c
	c.w.Lock()
	if s.state == stateClosed || s.answered { // ended while it waited for a connection
		c.w.Unlock()
		u.release()
		return
	}
	u.w.Lock()
	if u.w.Dead || u.w.Closing || u.unusable.Load() {
		// Closed, or going away (GOAWAY, idle, out of stream ids) since
		// it was picked: another connection takes the stream.
		u.w.Unlock()
		u.release()
		c.w.Unlock()
		if s.retries++; s.retries > 3 {
			s.fail(answer.ErrShardDown, s.b.Name)
			return
		}
		go s.dialAndOpen()
		return
	}
	s.up, s.upID = u, u.nextID
	if u.nextID += 2; u.nextID > 1<<31-1-2*MaxClientStreams {
		u.unusable.Store(true) // ids run out: drained, then closed (forget)
	}
	u.streams[s.upID] = s
	s.resp.Src, s.resp.SrcID, s.resp.RecvWin = u.w, s.upID, h2wire.ShardStreamWindow
	s.resp.Grant, s.resp.Budget = h2wire.ShardStreamWindow, &c.grown
	r := &s.req
	r.Dst, r.Pend, r.Trailer, r.End = u.w, s.early, s.earlyTrailer, s.state == stateHalfClosedRemote
	s.early, s.earlyTrailer = nil, nil
	headEnd := r.End && len(r.Pend) == 0 && r.Trailer == nil
	u.w.Headers(s.upID, s.head, headEnd)
	s.head = nil
	r.Closed = headEnd
	sent := r.Open(s.upID)
	u.w.Signal()
	u.w.Unlock()
	s.startTimers()
	c.w.Unlock()
	r.Credit(sent)
}

// startTimers bounds the wait for the answer's head by UpstreamTimeout,
// and the whole call by grpc-timeout when the client set one; c.w.mu
// held.
func (s *stream) startTimers() {
	name, up := s.b.Name, s.up
	s.headTimer = time.AfterFunc(s.c.r.cfg.UpstreamTimeout, func() {
		if s.headTimedOut(name) {
			up.probe()
		}
	})
	if s.grpcTimeout > 0 {
		s.deadline = time.AfterFunc(s.grpcTimeout, func() { s.fail(answer.ErrShardTimeout, name) })
	}
}

// headTimedOut fails the stream if its answer's head has still not come
// (the timer may fire as it arrives); it tells whether it did.
func (s *stream) headTimedOut(name string) bool {
	s.c.w.Lock()
	defer s.c.w.Unlock()
	if s.state == stateClosed || s.answered {
		return false
	}
	s.cancelShard()
	s.answer(answer.ErrShardTimeout, name)
	return true
}

// shardReset: the shard reset the stream. Before an answer, REFUSED_STREAM
// (not processed) is passed on for the client to retry; anything else is
// a failed call. After the answer started, the reset passes through.
func (s *stream) shardReset(code http2.ErrCode) {
	c := s.c
	c.w.Lock()
	defer c.w.Unlock()
	if s.state == stateClosed {
		return
	}
	switch {
	case s.answered:
		s.respReset(code)
	case code == http2.ErrCodeRefusedStream:
		s.status = 0
		s.respReset(code)
	default:
		s.answer(answer.ErrShardDown, s.b.Name)
	}
}

// onShardHeaders relays the shard's head (1xx, then the final one) or its
// trailers.
func (s *stream) onShardHeaders(f *h2hpack.Block) {
	c := s.c
	c.w.Lock()
	defer c.w.Unlock()
	if s.state == stateClosed {
		return
	}
	if s.answered { // trailers: after the data, and ending the stream
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 || s.respDeclared >= 0 && s.respLen != s.respDeclared {
			s.cancelShard()
			s.endAnswered(answer.ErrBadResponse)
			return
		}
		s.noteGRPC(f)
		s.resp.End, s.resp.Trailer = true, appendAnswerFields(nil, f.RegularFields(), false)
		s.resp.Flush()
		return
	}
	status := f.PseudoValue("status")
	code := parseStatus(status)
	declared, lengthOK := s.answerLength(f, code)
	if code < 100 || code == 101 || code < 200 && f.StreamEnded() || !lengthOK {
		s.cancelShard()
		s.answer(answer.ErrBadResponse, s.b.Name)
		return
	}
	u := s.up
	fields := append(u.fields[:0], hpack.HeaderField{Name: ":status", Value: status})
	fields = appendAnswerFields(fields, f.RegularFields(), true)
	fields = append(fields, hpack.HeaderField{Name: header.ShardLower, Value: s.b.Name})
	defer func() { clear(fields); u.fields = fields[:0] }()
	if code < 200 {
		c.w.Headers(s.id, fields, false)
		c.w.Signal()
		return
	}
	stopTimer(s.headTimer)
	s.answered, s.status = true, code
	s.ttfb = time.Since(s.d.Start)
	s.noteGRPC(f)
	s.respDeclared = declared // checked against the DATA by the up reader
	c.w.Headers(s.id, fields, f.StreamEnded())
	c.w.Signal()
	if f.StreamEnded() {
		s.resp.Closed = true
		s.ended()
		return
	}
	s.resp.ID = s.id
	s.resp.Flush()
}

// answerLength is the content-length a final answer head declares (-1:
// none, or one its DATA need not match: HEAD, 204, 304, 1xx), and false
// when it is malformed or the head ends a stream it says has a body.
func (s *stream) answerLength(f *h2hpack.Block, code int) (int64, bool) {
	v := f.Value("content-length")
	if v == "" || s.isHead || code < 200 || code == 204 || code == 304 {
		return -1, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 0 && f.StreamEnded() {
		return -1, false
	}
	return n, true
}

// parseStatus parses a :status value: exactly three digits, else -1.
func parseStatus(v string) int {
	if len(v) != 3 {
		return -1
	}
	n := 0
	for i := 0; i < 3; i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int(v[i]-'0')
	}
	if n > 599 {
		return -1
	}
	return n
}
