package proxy

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// h2stream is one relayed stream: the client's stream and, once opened,
// the shard's. Lock order: the client connection's w.mu, then the shard
// connection's; never the other way.
type h2stream struct {
	c    *h2client
	id   uint32
	req  h2half // client -> shard
	resp h2half // shard -> client
	grpc bool
	key  string
	b    *backend
	head []hpack.HeaderField // the head for the shard, until sent
	live *liveStream

	start time.Time

	grpcTimeout time.Duration
	isHead      bool // a HEAD request: its answer has no body

	// The answer's declared length and the DATA so far; only the shard
	// connection's reader uses them.
	respDeclared, respLen int64

	// guarded by up.w.mu: the shard's stream is closed or forgotten
	shardGone bool
	retries   int // of open, on a connection that went away meanwhile

	// guarded by c.w.mu
	up           *h2up
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
func (c *h2client) onHeaders(f *h2block) error {
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
	if c.goAway || len(c.streams) >= h2MaxStreams || f.invalid {
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

func (c *h2client) newStream(id uint32, f *h2block) *h2stream {
	s := &h2stream{c: c, id: id, start: time.Now(), reqDeclared: -1, reqEnded: f.StreamEnded()}
	s.req = h2half{src: c.w, srcID: id, recvWin: h2StreamWindow, connCredit: true, srcDone: s.reqEnded}
	s.resp = h2half{dst: c.w, win: int64(c.w.initWin), onClose: s.closed} // id: once answered
	return s
}

// onTrailers passes the client's trailers on, after its data.
func (c *h2client) onTrailers(s *h2stream, f *h2block) error {
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
	trailer := appendRegular(nil, f.RegularFields())
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

// route checks the request, finds its owner and opens the stream there.
func (s *h2stream) route(f *h2block) {
	c := s.c
	rq, err := parseH2Request(f)
	s.grpc, s.grpcTimeout, s.isHead = rq.grpc, rq.timeout, rq.method == "HEAD"
	if f.truncated {
		err = ErrHeaderTooLarge
	}
	if errors.Is(err, errMalformedH2) {
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
	snap := c.p.snap.Load()
	if snap == nil || len(snap.backends) == 0 {
		s.fail(ErrNoShards, "")
		return
	}
	sc := AcquireScratch()
	key, err := c.p.keys.Key(h2KeyRequest{fields: f.Fields, path: rq.path, query: rq.query}, sc)
	s.key = string(key)
	ReleaseScratch(sc)
	if err != nil {
		c.p.metrics.keyErrorFor(err)
		s.fail(err, "")
		return
	}
	// The head is built in the connection's scratch: on the usual path it
	// is sent before route returns; a stream that must wait copies it.
	s.head = c.outboundHead(c.head[:0], f, rq)
	c.head = s.head[:0]
	s.toOwner(snap)
}

// toOwner sends the stream to its key's owner on snap, holding it first
// for a not-ready owner when --owner-wait allows.
func (s *h2stream) toOwner(snap *snapshot) {
	key := unsafe.Slice(unsafe.StringData(s.key), len(s.key))
	shard, i := ownerOf(snap, key)
	if !shard.Ready {
		if s.c.p.cfg.OwnerWait <= 0 {
			snap.backends[i].metrics.countAs(http.StatusServiceUnavailable, protoH2)
			s.fail(ErrShardNotReady, shard.Name)
			return
		}
		s.head = slices.Clone(s.head)
		go s.awaitOwner(snap)
		return
	}
	b := snap.backends[i]
	if b.proto != watch.H2C {
		s.refuse()
		return
	}
	p := s.c.p
	p.hot.sample(i, key)
	if name, addr, moved := snap.table.Previous(key, shard); moved {
		s.head = appendPrevious(s.head, previousOwner{name, addr})
		b.metrics.handoff.Inc()
	}
	c := s.c
	c.w.mu.Lock()
	if s.done {
		c.w.mu.Unlock()
		return
	}
	s.b = b
	s.live = p.live.add(s.key, b.name, s.moved)
	c.w.mu.Unlock()
	p.endIfMoved(s.live)
	if up := b.h2pool().usable(); up != nil {
		s.open(up)
		return
	}
	s.head = slices.Clone(s.head)
	go s.dialAndOpen()
}

// awaitOwner holds the stream for its owner to become ready.
func (s *h2stream) awaitOwner(snap *snapshot) {
	gone := make(chan struct{})
	s.c.w.mu.Lock()
	if s.done {
		s.c.w.mu.Unlock()
		return
	}
	s.gone = gone
	s.c.w.mu.Unlock()
	key := []byte(s.key)
	held, _, outcome := s.c.p.awaitOwner(snap, key, gone, nil)
	switch outcome {
	case waitServed:
		s.toOwner(held)
	case waitGone:
	default:
		shard, i := ownerOf(snap, key)
		snap.backends[i].metrics.countAs(http.StatusServiceUnavailable, protoH2)
		s.fail(ErrShardNotReady, shard.Name)
	}
}

// dialAndOpen opens the stream on a new connection to the shard.
func (s *h2stream) dialAndOpen() {
	up, err := s.b.h2pool().get()
	if err != nil {
		s.fail(err, s.b.name) // counted when the stream closes
		return
	}
	s.open(up)
}

// refuse turns a stream away unprocessed (its owner speaks HTTP/1.1,
// which this connection cannot reach) and asks the client to reconnect.
func (s *h2stream) refuse() {
	c := s.c
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	s.status = 0
	s.respReset(http2.ErrCodeRefusedStream)
	c.sendGoAway()
}

// fail answers the stream with the proxy's own error, if it can still.
func (s *h2stream) fail(err error, shard string) {
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
func (s *h2stream) answer(err error, shard string) {
	a := AnswerFor(err, shard)
	s.answered, s.status = true, a.Status
	w := s.c.w
	if s.grpc {
		fields := []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: strconv.Itoa(grpcCode(a))}, {Name: "grpc-message", Value: grpcEscape(a.Body.Error)}}
		if shard != "" {
			fields = append(fields, hpack.HeaderField{Name: "x-shard", Value: shard})
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
		fields = append(fields, hpack.HeaderField{Name: "x-shard", Value: shard})
	}
	w.headers(s.id, fields, false)
	s.resp.pend, s.resp.end = body, true
	s.resp.flush()
	w.signal()
}

// endAnswered ends a stream whose answer has started: a gRPC call gets
// its status in trailers; anything else is reset, so that the client
// cannot take a cut body for a whole one. c.w.mu held.
func (s *h2stream) endAnswered(err error) {
	if !s.grpc {
		s.respReset(http2.ErrCodeInternal)
		return
	}
	a := AnswerFor(err, s.b.name)
	s.resp.end = true
	s.resp.trailer = []hpack.HeaderField{{Name: "grpc-status", Value: strconv.Itoa(grpcCode(a))},
		{Name: "grpc-message", Value: grpcEscape(a.Body.Error)}}
	s.resp.flush()
}

// moved ends the stream: its key now belongs to another shard.
func (s *h2stream) moved() { s.fail(ErrOwnerMoved, s.shardName()) }

func (s *h2stream) shardName() string {
	if s.b == nil {
		return ""
	}
	return s.b.name
}

// respReset resets the client's stream with code; c.w.mu held.
func (s *h2stream) respReset(code http2.ErrCode) {
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
func (s *h2stream) respGone() {
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
func (s *h2stream) cancelShard() {
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
func (s *h2stream) closed() {
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
	if s.live != nil {
		c.p.live.remove(s.live)
	}
	if s.b != nil && s.status != 0 {
		s.b.metrics.countAs(s.status, protoH2)
		s.b.metrics.duration.Observe(time.Since(s.start).Seconds())
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// h2Request is what the relay reads of a request head.
type h2Request struct {
	method      string
	path, query []byte
	length      int64 // content-length, -1 if none
	grpc        bool
	te          bool          // "te: trailers"
	timeout     time.Duration // grpc-timeout, 0 if none
}

// errMalformedH2 is a request RFC 9113 §8.1.1 calls malformed: the stream
// is reset with PROTOCOL_ERROR.
var errMalformedH2 = errors.New("malformed HTTP/2 request")

// parseH2Request checks a request head (RFC 9113 §8.2, §8.3); the Framer
// has checked field names and values and the pseudo-fields' order.
func parseH2Request(f *h2block) (h2Request, error) {
	rq := h2Request{length: -1}
	var scheme, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			rq.method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
		default: // :status, :protocol (no extended CONNECT here)
			return rq, errMalformedH2
		}
	}
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return rq, errMalformedH2
		case "te":
			if hf.Value != "trailers" {
				return rq, errMalformedH2
			}
			rq.te = true
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || rq.length >= 0 && rq.length != n {
				return rq, errMalformedH2
			}
			rq.length = n
		case "content-type":
			rq.grpc = isGRPCType(hf.Value)
		case "grpc-timeout":
			rq.timeout, _ = parseGRPCTimeout(hf.Value)
		}
	}
	if rq.method == "CONNECT" {
		return rq, ErrMethodNotAllowed
	}
	if rq.method == "" || scheme == "" || path == "" || path[0] != '/' && path != "*" {
		return rq, errMalformedH2
	}
	p := unsafe.Slice(unsafe.StringData(path), len(path))
	if i := strings.IndexByte(path, '?'); i >= 0 {
		rq.path, rq.query = p[:i], p[i+1:]
	} else {
		rq.path = p
	}
	return rq, nil
}

// isGRPCType tells a gRPC content type (application/grpc, +proto, ...).
func isGRPCType(ct string) bool {
	const g = "application/grpc"
	return strings.HasPrefix(ct, g) && (len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';')
}

// outboundHead is the request head as the shard gets it: the
// pseudo-fields and fields as received, under the header policy (no
// hop-by-hop field; X-Forwarded-*; a client's own X-Shard-Previous*
// dropped).
func (c *h2client) outboundHead(out []hpack.HeaderField, f *h2block, rq h2Request) []hpack.HeaderField {
	var authority, xff string
	proto, host := false, false
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":scheme":
			hf.Value = "http"
		case ":authority":
			authority = hf.Value
		case hdrPrevious, hdrPreviousAddress:
			continue
		case "x-forwarded-for":
			xff = joinComma(xff, hf.Value)
			continue
		case "x-forwarded-proto":
			proto = true
		case "x-forwarded-host":
			host = true
		}
		if h2HopByHop[hf.Name] {
			continue
		}
		out = append(out, hf)
	}
	if rq.te {
		out = append(out, hpack.HeaderField{Name: "te", Value: "trailers"})
	}
	out = append(out, hpack.HeaderField{Name: "x-forwarded-for", Value: joinComma(xff, c.ip)})
	if !proto {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-proto", Value: "http"})
	}
	if !host && authority != "" {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-host", Value: authority})
	}
	return out
}

// Lower-case forms of the handoff headers, as HTTP/2 spells them.
const (
	hdrPrevious        = "x-shard-previous"
	hdrPreviousAddress = "x-shard-previous-address"
)

func appendPrevious(h []hpack.HeaderField, prev previousOwner) []hpack.HeaderField {
	if prev.name == "" {
		return h
	}
	h = append(h, hpack.HeaderField{Name: hdrPrevious, Value: prev.name})
	if prev.addr != "" {
		h = append(h, hpack.HeaderField{Name: hdrPreviousAddress, Value: prev.addr})
	}
	return h
}

func joinComma(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// appendRegular appends fields minus those that are hop-by-hop.
func appendRegular(dst, fields []hpack.HeaderField) []hpack.HeaderField {
	for _, hf := range fields {
		if !h2HopByHop[hf.Name] {
			dst = append(dst, hf)
		}
	}
	return dst
}

// h2HopByHop is h1.HopByHopFields as HTTP/2 spells names (lower case):
// the header policy's one list.
var h2HopByHop = func() map[string]bool {
	m := make(map[string]bool, len(h1.HopByHopFields))
	for _, name := range h1.HopByHopFields {
		m[strings.ToLower(name)] = true
	}
	return m
}()

// h2KeyRequest lets key rules read a relayed request's head.
type h2KeyRequest struct {
	fields      []hpack.HeaderField
	path, query []byte
}

// HeaderValues implements KeyRequest. The values point into the decoded
// strings, which the rules only read.
func (r h2KeyRequest) HeaderValues(dst [][]byte, name string) [][]byte {
	for _, hf := range r.fields {
		if len(hf.Name) == len(name) && strings.EqualFold(hf.Name, name) {
			dst = append(dst, unsafe.Slice(unsafe.StringData(hf.Value), len(hf.Value)))
		}
	}
	return dst
}

// PathQuery implements KeyRequest.
func (r h2KeyRequest) PathQuery() (path, query []byte) { return r.path, r.query }

// Body implements KeyRequest: relayed requests are routed on their head.
func (r h2KeyRequest) Body() []byte { return nil }
