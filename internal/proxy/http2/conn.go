package http2

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2wire"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientConn is one client connection served by the relay.
type clientConn struct {
	r  *Relay
	w  *h2wire.Conn
	fr *http2.Framer
	ip string
	// proto is the X-Forwarded-Proto value: "https" on a TLS connection.
	proto string
	blk   *h2hpack.Block // the reader's header block decoder
	// opened and cancelled count the client's streams, and those it reset
	// before their answer (the reader's own).
	opened, cancelled int
	// head is the reader's scratch for request heads (see route).
	head []hpack.HeaderField
	// grown is how far its streams' windows towards shards have grown
	// beyond h2wire.ShardStreamWindow, together (h2wire.AnswerBudget).
	grown atomic.Int64
	// bodyTurn is the stream waiting for its body whose window opens as
	// it buffers (see body.go); guarded by w.mu.
	bodyTurn *stream

	addr string // the client's address, once a record asked for it (client)

	// guarded by w.mu
	streams map[uint32]*stream
	lastID  uint32 // the highest stream id the client opened
	// reset holds the last streams the relay reset while the client could
	// still send on them: frames the client sent before it saw the reset
	// (trailers) are ignored on those (RFC 9113 §5.1), and only on those.
	reset      [resetMemory]uint32
	resetPos   int
	goAway     bool // no new streams: GOAWAY sent, or received
	sentGoAway bool
	idle       time.Time
	// readDeadline is the read deadline last set.
	readDeadline time.Time
}

// ServeConn serves a client connection that sent the HTTP/2 preface;
// pending holds the bytes read from it so far. It returns when the
// connection is closed (at once, closing it, after Shutdown began).
func (r *Relay) ServeConn(nc net.Conn, ip string, pending []byte) {
	c := &clientConn{r: r, ip: ip, proto: "http", streams: map[uint32]*stream{}}
	if _, ok := nc.(*tls.Conn); ok {
		c.proto = "https"
	}
	c.w = h2wire.New(nc, r.cfg.ClientWriteTimeout)
	if !r.conns.add(c) {
		_ = nc.Close()
		return
	}
	defer r.conns.done(c)
	err := c.serve(sock.NewReader(nc, pending, readBufs))
	c.shutdownStreams()
	if err == errBacklog {
		_ = nc.Close() // it does not read: no GOAWAY would reach it
	}
	c.w.Lock()
	// The reason the connection ends: a protocol error's code, or NO_ERROR
	// (idle, draining, the client left).
	code := http2.ErrCodeNo
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	if !c.w.Dead {
		c.w.GoAway(c.lastID, code)
	}
	c.w.Unlock()
	c.w.Close()
}

// serve reads the client's frames until the connection ends.
func (c *clientConn) serve(br io.Reader) error {
	got := make([]byte, len(preface))
	_ = c.w.NC.SetReadDeadline(time.Now().Add(c.r.cfg.ClientHeaderTimeout))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, preface) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.fr = http2.NewFramer(nil, br)
	c.fr.SetMaxReadFrameSize(16384) // what SETTINGS_MAX_FRAME_SIZE says by default
	c.blk = h2hpack.NewBlock(MaxHeaderList)
	c.fr.SetReuseFrames()
	c.w.Lock()
	c.w.Settings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: MaxClientStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: MaxHeaderList},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	c.w.WindowUpdate(0, connWindow-65535)
	c.w.RecvWin = connWindow
	c.idle = time.Now()
	c.w.Signal()
	c.w.Unlock()
	for {
		if !c.setReadDeadline() {
			return errBacklog
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			// The Framer's stream errors (a HEADERS frame with bad padding,
			// a zero window increment) end the connection: a header block
			// left undecoded would desynchronize HPACK (RFC 9113 §4.3).
			var se http2.StreamError
			if errors.As(err, &se) {
				return http2.ConnectionError(se.Code)
			}
			return err
		}
		if err := c.frame(f); err != nil {
			return err
		}
	}
}

// setReadDeadline bounds an idle connection (no stream open) by
// IdleTimeout; a connection with open streams may wait as long as they
// last. False: the client leaves unread more than outHardCap.
func (c *clientConn) setReadDeadline() bool {
	c.w.Lock()
	defer c.w.Unlock()
	if len(c.w.Out) > outHardCap {
		return false
	}
	c.idleDeadline()
	return true
}

// idleDeadline sets the read deadline for the streams open: none while
// some are, IdleTimeout after the last one ended, now when draining. Set
// under w.mu, so that a stream closing on another goroutine and the
// reader agree on the last word.
func (c *clientConn) idleDeadline() {
	var dl time.Time
	switch {
	case len(c.streams) > 0:
	case c.goAway:
		dl = time.Now()
	default:
		dl = c.idle.Add(c.r.cfg.IdleTimeout)
	}
	if !dl.Equal(c.readDeadline) { // unchanged, as mostly under load: no call
		c.readDeadline = dl
		_ = c.w.NC.SetReadDeadline(dl)
	}
}

// frame handles one frame from the client.
func (c *clientConn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		if done, err := c.blk.Start(f); err != nil || !done {
			return err
		}
		return c.onHeaders(c.blk)
	case *http2.ContinuationFrame:
		if done, err := c.blk.More(f); err != nil || !done {
			return err
		}
		return c.onHeaders(c.blk)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.SettingsFrame:
		if !f.IsAck() {
			return c.onSettings(f)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.w.PingAck(f.Data)
		}
	case *http2.GoAwayFrame:
		c.w.Lock()
		c.goAway = true // the client opens no more streams; ours go on
		c.w.Unlock()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY and unknown frames are ignored (RFC 9113 §5.5)
}

// onHeaders takes a HEADERS frame from the client: a new request, or the
// trailers of one.
func (c *clientConn) onHeaders(f *h2hpack.Block) error {
	id := f.ID
	c.w.Lock()
	if s := c.streams[id]; s != nil {
		c.w.Unlock()
		return c.onTrailers(s, f)
	}
	if id%2 == 0 {
		c.w.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if id <= c.lastID {
		// A closed stream (§5.1). Trailers of one we reset may have been on
		// their way: the block was decoded, and is dropped. Any other
		// HEADERS there (a reused id, or a lower one never opened) is a
		// connection error, not a stream that would wait for ever.
		known := f.StreamEnded() && c.wasReset(id)
		c.w.Unlock()
		if known {
			return nil
		}
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastID = id
	if c.goAway || len(c.streams) >= MaxClientStreams || f.Invalid {
		code := http2.ErrCodeRefusedStream
		if f.Invalid {
			code = http2.ErrCodeProtocol
		}
		c.noteReset(id)
		c.w.RST(id, code)
		c.w.Signal()
		c.w.Unlock()
		return nil
	}
	s := c.newStream(id, f)
	c.streams[id] = s
	c.opened++
	c.w.Unlock()
	s.route(f)
	return nil
}

func (c *clientConn) newStream(id uint32, f *h2hpack.Block) *stream {
	s := &stream{c: c, id: id, reqDeclared: -1, routing: true}
	s.d.Begin(route.HTTP2, time.Now())
	s.req = h2wire.Half{Src: c.w, SrcID: id, RecvWin: streamWindow, Grant: streamWindow, ConnCredit: true}
	s.resp = h2wire.Half{Dst: c.w, Win: int64(c.w.InitWin), OnClose: s.ended} // id: once answered
	if f.StreamEnded() {
		s.endRemote()
	}
	return s
}

// onTrailers passes the client's trailers on, after its data.
func (c *clientConn) onTrailers(s *stream, f *h2hpack.Block) error {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || f.Invalid || f.Truncated {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	c.w.Lock()
	if s.state == stateHalfClosedRemote { // a stream error (§5.1)
		c.w.Unlock()
		c.streamError(s.id, http2.ErrCodeStreamClosed)
		return nil
	}
	s.endRemote()
	bad := s.reqDeclared >= 0 && s.reqLen != s.reqDeclared
	trailer := appendAnswerFields(nil, f.RegularFields(), false)
	if !bad && s.up == nil {
		s.earlyTrailer = trailer
		if s.h1 != nil {
			poke(s.h1.wake)
		}
		waited := s.bodyWait
		s.endBodyWait()
		c.w.Unlock()
		if waited {
			s.routeBody(&s.kreq, nil)
		}
		return nil
	}
	c.w.Unlock()
	if bad {
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	s.req.Finish(trailer)
	return nil
}

// onSettings applies the client's settings; a new initial window size
// changes the window of every open stream by the difference (§6.9.2).
func (c *clientConn) onSettings(f *http2.SettingsFrame) error {
	c.w.Lock()
	old := c.w.InitWin
	if _, err := c.w.ApplySettings(f); err != nil {
		c.w.Unlock()
		return err
	}
	var credits []h2wire.Credit
	if d := int64(c.w.InitWin - old); d != 0 {
		for _, s := range c.streams {
			if s.resp.Win+d > maxWindow {
				c.w.Unlock()
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			if n := s.resp.WindowUpdate(d); n > 0 {
				credits = append(credits, h2wire.Credit{H: &s.resp, N: n})
			}
		}
	}
	c.w.Signal()
	c.w.Unlock()
	h2wire.GiveCredits(credits)
	return nil
}

func (c *clientConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.w.Lock()
	var credits []h2wire.Credit
	if f.StreamID == 0 {
		if c.w.SendWin += int64(f.Increment); c.w.SendWin > maxWindow {
			c.w.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		credits = c.w.Resume(nil)
	} else if s := c.streams[f.StreamID]; s != nil {
		if s.resp.Win+int64(f.Increment) > maxWindow {
			s.respReset(http2.ErrCodeFlowControl)
		} else if n := s.resp.WindowUpdate(int64(f.Increment)); n > 0 {
			credits = append(credits, h2wire.Credit{H: &s.resp, N: n})
		}
	}
	c.w.Unlock()
	h2wire.GiveCredits(credits)
	return nil
}

// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
const maxWindow = 1<<31 - 1

// onData passes a DATA frame on to the stream's shard.
func (c *clientConn) onData(f *http2.DataFrame) error {
	n := int(f.Length) // padding included, for flow control
	c.w.Lock()
	if !c.w.Consumed(n) {
		c.w.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := c.streams[f.StreamID]
	if s == nil || s.state == stateHalfClosedRemote {
		c.w.GiveBack(n) // a stream already ended or reset: dropped
		c.w.Unlock()
		switch {
		case s != nil: // half-closed (remote): the client ended it (§5.1)
			c.streamError(s.id, http2.ErrCodeStreamClosed)
		case f.StreamID > c.lastID:
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		return nil
	}
	data := f.Data()
	if !s.req.Received(n) {
		c.w.GiveBack(n)
		c.w.Unlock()
		c.streamError(s.id, http2.ErrCodeFlowControl)
		return nil
	}
	s.reqLen += int64(len(data))
	end := f.StreamEnded()
	if end {
		s.endRemote()
	}
	bad := s.reqDeclared >= 0 && (s.reqLen > s.reqDeclared || end && s.reqLen != s.reqDeclared)
	pad := n - len(data) // given back at once, stream and connection
	if bad {             // content-length and DATA disagree: malformed (§8.1.1)
		c.w.GiveBack(pad)
		c.w.Unlock()
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	if limit := c.r.cfg.MaxRequestBodyBytes; limit > 0 && s.reqLen > limit {
		// Cut: nothing past the limit goes on; the shard's stream is
		// reset, and the client answered 413 if it was not yet.
		c.w.GiveBack(n)
		name := s.shardName() // s.b is guarded by c.w.mu
		c.w.Unlock()
		s.fail(answer.BodyTooLarge(int(min(limit, math.MaxInt32))), name)
		return nil
	}
	if s.bodyWait { // a body rule waits for the whole body
		over, err := s.buffer(data, n)
		c.w.Unlock()
		if over {
			s.routeBody(&s.kreq, err)
		}
		return nil
	}
	if s.up == nil { // not open on the shard yet (or an HTTP/1.1 exchange): held within the window
		s.early = append(s.early, data...)
		if s.h1 != nil {
			poke(s.h1.wake)
		}
		c.w.Unlock()
		s.req.Credit(pad)
		return nil
	}
	c.w.Unlock()
	s.req.Credit(pad)
	s.req.Push(data, end)
	return nil
}

// onReset: the client cancelled a stream.
func (c *clientConn) onReset(f *http2.RSTStreamFrame) error {
	c.w.Lock()
	s := c.streams[f.StreamID]
	early := s != nil && !s.answered
	if s != nil {
		if early {
			s.status = answer.StatusClientGone
		}
		s.respGone()
	}
	c.w.Unlock()
	// Rapid reset (CVE-2023-44487): streams opened and cancelled at once
	// cost the shards work at no cost to the client. A connection that
	// cancels most of its streams before their answer, more than a
	// budget, is told to go away.
	if early {
		if c.cancelled++; c.cancelled > ResetBudget && 2*c.cancelled > c.opened {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
	}
	return nil
}

// Abuse bounds of a client connection.
const (
	// ResetBudget is how many streams a client may cancel before their
	// answer while they are most of what it opened.
	ResetBudget = 2 * MaxClientStreams
	// outHardCap: a client whose connection has this much output queued
	// (it does not read, yet keeps sending frames that need an answer:
	// PINGs, SETTINGS, refused streams) is disconnected.
	outHardCap = 4 << 20
)

// errBacklog ends a connection whose client does not read what its
// own frames make us send.
var errBacklog = errors.New("http2: the client does not read its answers")

// streamError resets a stream the client broke (§5.4.2).
func (c *clientConn) streamError(id uint32, code http2.ErrCode) {
	c.w.Lock()
	defer c.w.Unlock()
	if s := c.streams[id]; s != nil {
		if !s.answered {
			s.status = http.StatusBadRequest
		}
		s.respReset(code)
		return
	}
	c.noteReset(id)
	c.w.RST(id, code)
	c.w.Signal()
}

// resetMemory is how many reset streams a connection remembers.
const resetMemory = 2 * MaxClientStreams

// noteReset remembers that the relay reset stream id while the client
// could still send on it; w.mu held.
func (c *clientConn) noteReset(id uint32) {
	c.reset[c.resetPos] = id
	c.resetPos = (c.resetPos + 1) % resetMemory
}

// wasReset tells whether the relay reset stream id lately; w.mu held.
func (c *clientConn) wasReset(id uint32) bool {
	for _, r := range c.reset {
		if r == id {
			return true
		}
	}
	return false
}

// shutdownStreams ends every stream of a connection that closed.
func (c *clientConn) shutdownStreams() {
	c.w.Lock()
	defer c.w.Unlock()
	for _, s := range c.streams {
		if !s.answered {
			s.status = answer.StatusClientGone
		}
		s.respGone()
	}
}

// drain sends GOAWAY: streams already open finish, no new ones start, and
// the connection closes when the last one ends.
func (c *clientConn) drain() {
	c.w.Lock()
	c.sendGoAway()
	c.idleDeadline()
	c.w.Unlock()
}

// sendGoAway tells the client, once, that no new stream will be taken;
// w.mu held.
func (c *clientConn) sendGoAway() {
	c.goAway = true
	if !c.sentGoAway {
		c.sentGoAway = true
		c.w.GoAway(c.lastID, http2.ErrCodeNo)
		c.w.Signal()
	}
}
