package http2

import (
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
)

// The record. A stream's routing record (s.d) is written by whichever
// goroutine routes it (the connection's reader, a body rule's wait, a
// hold for the owner) until the stream goes to its owner (s.b set, under
// c.w.mu) or its routing ends without one (routeEnd). The record is
// ended once by whoever comes last: close, once routing is over; or
// routeEnd, when the stream closed while it routed. That one decides
// and fills in the answer's side under c.w.mu, and leaves the end itself
// (route.Router.Done: the access log line, the span, the shard's
// metrics) to run once c.w.mu is unlocked (h2wire.Conn.Defer): nothing
// writes s.d after that, and the connection's other streams do not wait
// for a log line to be built.

// describe puts the request's side into the record, before its routing
// step (routed false) or after it, as route.Router.DescribeNow says; the
// connection's reader calls it.
func (s *stream) describe(rq *h2hpack.Request, routed bool) {
	if !s.c.r.router.DescribeNow(&s.d, routed) {
		return
	}
	s.d.DescribeString(rq.Method, rq.Path, rq.Query, s.c.client(), s.c.proto == "https")
	s.d.GRPC = s.grpc
}

// client is the client's address, for the records (made once, when the
// connection's first recorded stream asks); the reader's own.
func (c *clientConn) client() string {
	if c.addr == "" && c.w.NC.RemoteAddr() != nil {
		c.addr = c.w.NC.RemoteAddr().String()
	}
	return c.addr
}

// routeEnd ends the routing of a stream that will not go to its owner
// (or already went: then close records it). When the stream closed while
// it routed, its record is ended here.
func (s *stream) routeEnd() {
	s.c.w.Lock()
	defer s.c.w.Unlock()
	s.routing = false
	if s.state == stateClosed && s.b == nil {
		s.record()
	}
}

// record fills in what the stream knows of its answer and has the record
// ended (route.Router.Done) once c.w.mu is unlocked, once; c.w.mu held. A
// stream that never went to its owner is not counted for it.
func (s *stream) record() {
	if s.recorded {
		return
	}
	s.recorded = true
	d := &s.d
	if s.b == nil {
		d.Backend = nil
	}
	d.Status = s.status // 0: reset before an answer
	d.Error, d.TTFB, d.BytesIn, d.BytesOut = s.errMsg, s.ttfb, s.reqLen, s.bytesOut.Load()
	if s.grpcCode > 0 {
		d.SetGRPCStatus(s.grpcCode - 1)
	}
	s.c.w.Defer(s)
}

// RunUnlocked ends the stream's record (h2wire.Deferred): record left it
// for whoever unlocks c.w.mu next.
func (s *stream) RunUnlocked() { s.c.r.router.Done(&s.d) }

// noteGRPC takes a gRPC call's status from the shard's trailers (or its
// trailers-only answer); c.w.mu held.
func (s *stream) noteGRPC(f *h2hpack.Block) {
	if !s.grpc {
		return
	}
	v := f.Value("grpc-status")
	n := 0
	for i := 0; i < len(v) && i < 3; i++ {
		if v[i] < '0' || v[i] > '9' {
			return
		}
		n = n*10 + int(v[i]-'0')
	}
	if v != "" {
		s.grpcCode = n + 1
	}
}
