package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// The HTTP/2 relay: a client connection whose every stream goes to an h2c
// shard is relayed frame by frame. Each request's head is decoded (HPACK,
// by x/net/http2), its key taken and its owner found on one snapshot, and
// the head re-encoded on a multiplexed connection to the owner (h2up);
// DATA, trailers and resets then pass between the two streams with flow
// control on each side. One goroutine reads the client connection, one
// writes it, and no goroutine exists per stream.
//
// Connections that may need a net/http request (a body rule, an HTTP/1.1
// shard) go to Go's HTTP/2 server instead (h2.go); a stream whose owner
// turns out to be an HTTP/1.1 shard after a topology change is refused
// (REFUSED_STREAM, which clients retry) and the connection told to go
// away, so the client's next connection takes that path.

// relayable tells whether a new HTTP/2 connection can be relayed: no key
// rule reads the body, and every shard speaks h2c.
func (p *Proxy) relayable() bool {
	if p.keys.NeedsBody() {
		return false
	}
	snap := p.snap.Load()
	if snap == nil {
		return true
	}
	for i := range snap.table.Shards {
		if snap.table.Shards[i].Protocol != watch.H2C {
			return false
		}
	}
	return true
}

// h2client is one client connection served by the relay.
type h2client struct {
	p   *Proxy
	w   *h2wire
	fr  *http2.Framer
	ip  string
	blk *h2block // the reader's header block decoder
	// opened and cancelled count the client's streams, and those it reset
	// before their answer (the reader's own).
	opened, cancelled int
	// head is the reader's scratch for request heads (see route).
	head []hpack.HeaderField

	// guarded by w.mu
	streams    map[uint32]*h2stream
	lastID     uint32 // the highest stream id the client opened
	goAway     bool   // no new streams: GOAWAY sent, or received
	sentGoAway bool
	idle       time.Time
	// readDeadline is the read deadline last set.
	readDeadline time.Time
}

// h2Conns tracks the relay's client connections, for Shutdown.
type h2Conns struct {
	mu       sync.Mutex
	m        map[*h2client]struct{}
	draining bool
	wg       sync.WaitGroup
}

// relayH2 serves a client connection that sent the HTTP/2 preface; pending
// holds the bytes read so far. It returns when the connection is closed.
func (p *Proxy) relayH2(nc net.Conn, ip string, pending []byte) {
	c := &h2client{p: p, ip: ip, streams: map[uint32]*h2stream{}}
	c.w = newH2Wire(nc, p.cfg.ClientWriteTimeout)
	if !p.h2conns.add(c) {
		_ = nc.Close()
		return
	}
	defer p.h2conns.done(c)
	br := bufio.NewReaderSize(&prefixConn{Conn: nc, pending: pending}, h2ReadBuf)
	go c.w.writeLoop()
	err := c.serve(br)
	c.shutdownStreams()
	if err == errH2Backlog {
		_ = nc.Close() // it does not read: no GOAWAY would reach it
	}
	c.w.mu.Lock()
	// The reason the connection ends: a protocol error's code, or NO_ERROR
	// (idle, draining, the client left).
	code := http2.ErrCodeNo
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	if !c.w.dead {
		c.w.goAway(c.lastID, code)
	}
	c.w.mu.Unlock()
	c.w.close()
}

// serve reads the client's frames until the connection ends.
func (c *h2client) serve(br *bufio.Reader) error {
	preface := make([]byte, len(h2Preface))
	_ = c.w.nc.SetReadDeadline(time.Now().Add(c.p.cfg.ClientHeaderTimeout))
	if _, err := io.ReadFull(br, preface); err != nil || !bytes.Equal(preface, h2Preface) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.fr = http2.NewFramer(nil, br)
	c.fr.SetMaxReadFrameSize(16384) // what SETTINGS_MAX_FRAME_SIZE says by default
	c.blk = newH2Block()
	c.fr.SetReuseFrames()
	c.w.mu.Lock()
	c.w.settings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	c.w.windowUpdate(0, h2ConnWindow-65535)
	c.w.recvWin = h2ConnWindow
	c.idle = time.Now()
	c.w.signal()
	c.w.mu.Unlock()
	for {
		if !c.setReadDeadline() {
			return errH2Backlog
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
// last. False: the client leaves unread more than h2OutHardCap.
func (c *h2client) setReadDeadline() bool {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if len(c.w.out) > h2OutHardCap {
		return false
	}
	c.idleDeadline()
	return true
}

// idleDeadline sets the read deadline for the streams open: none while
// some are, IdleTimeout after the last one ended, now when draining. Set
// under w.mu, so that a stream closing on another goroutine and the
// reader agree on the last word.
func (c *h2client) idleDeadline() {
	var dl time.Time
	switch {
	case len(c.streams) > 0:
	case c.goAway:
		dl = time.Now()
	default:
		dl = c.idle.Add(c.p.cfg.IdleTimeout)
	}
	if !dl.Equal(c.readDeadline) { // unchanged, as mostly under load: no call
		c.readDeadline = dl
		_ = c.w.nc.SetReadDeadline(dl)
	}
}

// frame handles one frame from the client.
func (c *h2client) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		if done, err := c.blk.start(f); err != nil || !done {
			return err
		}
		return c.onHeaders(c.blk)
	case *http2.ContinuationFrame:
		if done, err := c.blk.more(f); err != nil || !done {
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
			c.w.pingAck(f.Data)
		}
	case *http2.GoAwayFrame:
		c.w.mu.Lock()
		c.goAway = true // the client opens no more streams; ours go on
		c.w.mu.Unlock()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY and unknown frames are ignored (RFC 9113 §5.5)
}

// onSettings applies the client's settings; a new initial window size
// changes the window of every open stream by the difference (§6.9.2).
func (c *h2client) onSettings(f *http2.SettingsFrame) error {
	c.w.mu.Lock()
	old := c.w.initWin
	if _, err := c.w.applySettings(f); err != nil {
		c.w.mu.Unlock()
		return err
	}
	var credits []h2credit
	if d := int64(c.w.initWin - old); d != 0 {
		for _, s := range c.streams {
			if s.resp.win+d > maxWindow {
				c.w.mu.Unlock()
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			if n := s.resp.windowUpdate(d); n > 0 {
				credits = append(credits, h2credit{&s.resp, n})
			}
		}
	}
	c.w.signal()
	c.w.mu.Unlock()
	giveCredits(credits)
	return nil
}

func (c *h2client) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.w.mu.Lock()
	var credits []h2credit
	if f.StreamID == 0 {
		if c.w.sendWin += int64(f.Increment); c.w.sendWin > maxWindow {
			c.w.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		credits = c.w.resume(nil)
	} else if s := c.streams[f.StreamID]; s != nil {
		if s.resp.win+int64(f.Increment) > maxWindow {
			s.respReset(http2.ErrCodeFlowControl)
		} else if n := s.resp.windowUpdate(int64(f.Increment)); n > 0 {
			credits = append(credits, h2credit{&s.resp, n})
		}
	}
	c.w.mu.Unlock()
	giveCredits(credits)
	return nil
}

// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
const maxWindow = 1<<31 - 1

// onData passes a DATA frame on to the stream's shard.
func (c *h2client) onData(f *http2.DataFrame) error {
	n := int(f.Length) // padding included, for flow control
	c.w.mu.Lock()
	if !c.w.consumed(n) {
		c.w.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := c.streams[f.StreamID]
	if s == nil || s.reqEnded {
		c.w.giveBack(n) // a stream already ended or reset: dropped
		c.w.mu.Unlock()
		switch {
		case s != nil: // half-closed (remote): the client ended it (§5.1)
			c.streamError(s.id, http2.ErrCodeStreamClosed)
		case f.StreamID > c.lastID:
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		return nil
	}
	data := f.Data()
	if !s.req.received(n) {
		c.w.giveBack(n)
		c.w.mu.Unlock()
		c.streamError(s.id, http2.ErrCodeFlowControl)
		return nil
	}
	s.reqLen += int64(len(data))
	end := f.StreamEnded()
	s.reqEnded, s.req.srcDone = end, end
	bad := s.reqDeclared >= 0 && (s.reqLen > s.reqDeclared || end && s.reqLen != s.reqDeclared)
	pad := n - len(data) // given back at once, stream and connection
	if bad {             // content-length and DATA disagree: malformed (§8.1.1)
		c.w.giveBack(pad)
		c.w.mu.Unlock()
		c.streamError(s.id, http2.ErrCodeProtocol)
		return nil
	}
	if s.up == nil { // not open on the shard yet: held (within the window)
		s.early = append(s.early, data...)
		c.w.mu.Unlock()
		s.req.credit(pad)
		return nil
	}
	c.w.mu.Unlock()
	s.req.credit(pad)
	s.req.push(data, end)
	return nil
}

// onReset: the client cancelled a stream.
func (c *h2client) onReset(f *http2.RSTStreamFrame) error {
	c.w.mu.Lock()
	s := c.streams[f.StreamID]
	early := s != nil && !s.answered
	if s != nil {
		if early {
			s.status = statusClientGone
		}
		s.respGone()
	}
	c.w.mu.Unlock()
	// Rapid reset (CVE-2023-44487): streams opened and cancelled at once
	// cost the shards work at no cost to the client. A connection that
	// cancels most of its streams before their answer, more than a
	// budget, is told to go away.
	if early {
		if c.cancelled++; c.cancelled > h2ResetBudget && 2*c.cancelled > c.opened {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
	}
	return nil
}

// Abuse bounds of a client connection.
const (
	// h2ResetBudget is how many streams a client may cancel before their
	// answer while they are most of what it opened.
	h2ResetBudget = 2 * h2MaxStreams
	// h2OutHardCap: a client whose connection has this much output queued
	// (it does not read, yet keeps sending frames that need an answer:
	// PINGs, SETTINGS, refused streams) is disconnected.
	h2OutHardCap = 4 << 20
)

// errH2Backlog ends a connection whose client does not read what its
// own frames make us send.
var errH2Backlog = errors.New("http2: the client does not read its answers")

// streamError resets a stream the client broke (§5.4.2).
func (c *h2client) streamError(id uint32, code http2.ErrCode) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if s := c.streams[id]; s != nil {
		if !s.answered {
			s.status = 400
		}
		s.respReset(code)
		return
	}
	c.w.rst(id, code)
	c.w.signal()
}

// shutdownStreams ends every stream of a connection that closed.
func (c *h2client) shutdownStreams() {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	for _, s := range c.streams {
		if !s.answered {
			s.status = statusClientGone
		}
		s.respGone()
	}
}

// drain sends GOAWAY: streams already open finish, no new ones start, and
// the connection closes when the last one ends.
func (c *h2client) drain() {
	c.w.mu.Lock()
	c.sendGoAway()
	c.idleDeadline()
	c.w.mu.Unlock()
}

// sendGoAway tells the client, once, that no new stream will be taken;
// w.mu held.
func (c *h2client) sendGoAway() {
	c.goAway = true
	if !c.sentGoAway {
		c.sentGoAway = true
		c.w.goAway(c.lastID, http2.ErrCodeNo)
		c.w.signal()
	}
}

// statusClientGone is counted for a request whose client left first.
const statusClientGone = 499

func (h *h2Conns) add(c *h2client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return false
	}
	if h.m == nil {
		h.m = map[*h2client]struct{}{}
	}
	h.m[c] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *h2Conns) done(c *h2client) {
	h.mu.Lock()
	delete(h.m, c)
	h.mu.Unlock()
	h.wg.Done()
}

// shutdown sends GOAWAY on every relayed connection and waits for their
// streams to finish, until done closes; then it closes what is left.
func (h *h2Conns) shutdown(done <-chan struct{}) bool {
	h.mu.Lock()
	h.draining = true
	for c := range h.m {
		c.drain()
	}
	h.mu.Unlock()
	finished := make(chan struct{})
	go func() { h.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return true
	case <-done:
	}
	h.mu.Lock()
	for c := range h.m {
		_ = c.w.nc.Close()
	}
	h.mu.Unlock()
	<-finished
	return false
}
