package http2

import (
	"errors"
	"slices"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// Body rules. A stream whose key a body rule reads waits, before any shard
// hears of it, for its whole body: its DATA are kept in stream.early (at
// most Config.MaxBodyBytes, each frame within ClientBodyTimeout of the
// last), then the rules run again with the body, and the stream goes on as
// any other (held for a not-ready owner, then sent to its owner with the
// body as its first DATA). A body too long is 413, one that stops coming
// 408, and one the rules cannot read the key of 400, as for HTTP/1.1.
//
// Memory: the bytes a waiting stream keeps are given back to the client's
// connection window at once, so that one stream's body never starves
// another's; but only one stream of a connection at a time, its body
// turn, has its stream window given back as it buffers. The others stop at
// their initial window (streamWindow) until the turn passes to them. So a
// connection keeps at most MaxBodyBytes + MaxClientStreams × streamWindow
// of bodies, whatever its client does.

// awaitBody makes the stream wait for its body (route found that a body
// rule needs it); the connection's reader calls it, with the request's
// head still in f. It tells whether the stream waits (its routing goes on
// when the body is in).
func (s *stream) awaitBody(f *h2hpack.Block, rq h2hpack.Request, kr keyRequest) bool {
	c := s.c
	if limit := c.r.cfg.MaxBodyBytes; rq.Length > int64(limit) {
		s.routeBody(&kr, answer.BodyTooLarge(limit)) // before any DATA is kept
		return true                                  // routeBody ended the routing
	}
	s.kreq = keyRequest{fields: slices.Clone(kr.fields), path: kr.path, query: kr.query}
	s.head = c.outboundHead(nil, f, rq)
	c.w.Lock()
	defer c.w.Unlock()
	if s.state == stateClosed {
		return false
	}
	s.bodyWait, s.lastBody = true, time.Now()
	if c.bodyTurn == nil {
		c.bodyTurn = s
	}
	s.bodyTimer = time.AfterFunc(c.r.cfg.ClientBodyTimeout, s.bodyTimedOut)
	return true
}

// buffer keeps a DATA frame's data (n bytes with padding) of a stream that
// waits for its body; c.w.mu held. It tells whether the wait is over, and
// why: nil when the body ended with this frame, else its refusal.
func (s *stream) buffer(data []byte, n int) (over bool, err error) {
	c := s.c
	c.w.GiveBack(n) // the connection's window, at once
	if limit := c.r.cfg.MaxBodyBytes; len(s.early)+len(data) > limit {
		s.endBodyWait()
		return true, answer.BodyTooLarge(limit)
	}
	s.early = append(s.early, data...)
	s.req.Prepaid += int64(len(data))
	paid := n
	if c.bodyTurn != s {
		s.withheld += len(data)
		paid -= len(data)
	}
	s.req.CreditStream(paid)
	s.lastBody = time.Now()
	if s.req.SrcDone {
		s.endBodyWait()
		return true, nil
	}
	return false, nil
}

// endBodyWait ends the stream's wait for its body, passing the
// connection's body turn to its oldest other waiting stream, whose window
// then opens; c.w.mu held.
func (s *stream) endBodyWait() {
	if !s.bodyWait {
		return
	}
	s.bodyWait = false
	stopTimer(s.bodyTimer)
	c := s.c
	if c.bodyTurn != s {
		return
	}
	c.bodyTurn = nil
	for _, o := range c.streams {
		if o.bodyWait && (c.bodyTurn == nil || o.id < c.bodyTurn.id) {
			c.bodyTurn = o
		}
	}
	if next := c.bodyTurn; next != nil {
		next.req.CreditStream(next.withheld)
		next.withheld = 0
	}
}

// bodyTimedOut ends the wait of a stream whose client sent no DATA for
// ClientBodyTimeout: 408.
func (s *stream) bodyTimedOut() {
	c := s.c
	timeout := c.r.cfg.ClientBodyTimeout
	c.w.Lock()
	if !s.bodyWait {
		c.w.Unlock()
		return
	}
	if left := timeout - time.Since(s.lastBody); left > 0 {
		s.bodyTimer.Reset(left) // DATA came meanwhile
		c.w.Unlock()
		return
	}
	s.endBodyWait()
	c.w.Unlock()
	s.routeBody(&s.kreq, answer.ErrBodyTimeout)
}

// routeBody takes the routing step of a stream whose wait for its body is
// over (bodyErr: why it failed) and goes on as route does. Whoever ended
// the wait calls it, once.
func (s *stream) routeBody(kr *keyRequest, bodyErr error) {
	err := s.routeStep(kr, func() error {
		if bodyErr != nil {
			return bodyErr
		}
		s.c.w.Lock()
		kr.body = s.early // complete: nothing is appended any more
		s.c.w.Unlock()
		if kr.body == nil {
			kr.body = emptyBody
		}
		return nil
	})
	switch {
	case errors.Is(err, route.ErrMustWait):
		go s.awaitOwner()
		return
	case errors.Is(err, keys.ErrNeedBody): // cannot be: the body is there
		s.fail(answer.ErrBadRequest, "")
	case err != nil:
		s.failRouting(err)
	default:
		s.toOwner()
	}
	s.routeEnd()
}
