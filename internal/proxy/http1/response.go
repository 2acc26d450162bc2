package http1

import (
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1write"
	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
)

// relay sends the final answer, whose head is in x.resp, to the client and
// streams its body: each read from the shard is written on at once, so
// memory is one buffer per direction whatever the body's length. It
// returns whether the client connection may carry another request.
func (x *exchange) relay(uc *upstream.Conn) bool {
	cc, r := x.cc, &x.resp
	method := []byte("GET")
	if x.isHead {
		method = []byte("HEAD")
	}
	framing := r.Framing(method)
	if framing == h1.FramingTunnel {
		if r.Status == 101 && x.upgrade {
			return x.tunnel(uc)
		}
		return x.fail(uc, answer.ErrBadResponse) // 101 nobody asked for, or CONNECT
	}
	// An answer that comes while the request body still streams ends the
	// connection: where that body ends will not be read (RFC 9112 §9.6).
	closing := x.clientClose || framing == h1.FramingClose ||
		framing == h1.FramingChunked && x.minor == 0 || cc.s.draining.Load() ||
		x.streaming && !x.copyEnded.Load()
	rh := h1write.ResponseHead{
		Shard:        x.b.Name,
		Closing:      closing,
		KeepAlive10:  x.minor == 0 && !closing,
		RelayChunked: x.minor == 1,
	}
	x.d.Status = r.Status
	head := h1write.AppendResponse(cc.scratch(), r, rh)
	cc.keepScratch(head)
	var err error
	switch framing {
	case h1.FramingNone:
		err = cc.write(head)
		x.uClean = true
	case h1.FramingLength:
		err = x.relayLength(uc, head, r.ContentLength)
	case h1.FramingChunked:
		err = x.relayChunked(uc, head)
	default:
		err = x.relayUntilClose(uc, head)
	}
	if err != nil && !x.headSent {
		return x.fail(uc, err) // nothing reached the client yet: it gets a 502
	}
	bodyDone := x.stopCopy()
	if err != nil {
		upstream.PoolOf(x.b).Discard(uc)
		return false
	}
	reusable := x.uClean && x.ur == x.uw && bodyDone &&
		!r.Flags.Has(h1.FlagConnClose) && (r.Minor == 1 || r.Flags.Has(h1.FlagConnKeepAlive))
	if reusable {
		upstream.PoolOf(x.b).Put(uc)
	} else {
		upstream.PoolOf(x.b).Discard(uc)
	}
	return !closing && bodyDone
}

// writeHead sends the answer's head, with as much of the body as fits in
// the same write. After it, errors can only end the connection.
func (x *exchange) writeHead(head, body []byte) error {
	if len(body) > 0 && len(head)+len(body) <= cap(head) {
		head = append(head, body...)
		x.d.BytesOut += int64(len(body))
		body = nil
	}
	x.headSent = true
	x.d.BytesOut += int64(len(body))
	if err := x.cc.write(head); err != nil {
		return err
	}
	if len(body) > 0 {
		return x.cc.write(body)
	}
	return nil
}

// relayLength streams a body of exactly n bytes.
func (x *exchange) relayLength(uc *upstream.Conn, head []byte, n int64) error {
	have := min(int64(x.uw-x.ur), n)
	if err := x.writeHead(head, x.ub[x.ur:x.ur+int(have)]); err != nil {
		return err
	}
	x.ur += int(have)
	left := n - have
	for left > 0 {
		x.ur, x.uw = 0, 0
		m, err := x.readUp(uc, x.ub)
		if err != nil {
			return err
		}
		take := min(int64(m), left)
		x.ur, x.uw = int(take), m // bytes past the body: a shard that lies
		if err := x.cc.write(x.ub[:take]); err != nil {
			return err
		}
		x.d.BytesOut += take
		left -= take
	}
	x.uClean = true
	return nil
}

// relayChunked streams a chunked body: as it is to an HTTP/1.1 client
// (trailers included), decoded to an HTTP/1.0 one, which then sees the end
// of the body as the connection closing.
func (x *exchange) relayChunked(uc *upstream.Conn, head []byte) error {
	var c h1.Chunked
	decode := x.minor == 0
	if decode && x.dbuf == nil {
		x.dbuf = getBuf()
	}
	for first := true; ; first = false {
		start, done := x.ur, false
		var out []byte
		if decode {
			out = (*x.dbuf)[:0]
		}
		for x.ur < x.uw && !done {
			n, data, fin, err := c.Next(x.ub[x.ur:x.uw])
			if err != nil {
				return answer.ErrBadResponse
			}
			out = append(out, data...)
			x.ur += n
			done = fin
		}
		piece := x.ub[start:x.ur]
		if decode {
			piece = out
		}
		var err error
		if first {
			err = x.writeHead(head, piece)
		} else if len(piece) > 0 {
			err = x.cc.write(piece)
			x.d.BytesOut += int64(len(piece))
		}
		if err != nil {
			return err
		}
		if done {
			x.uClean = true
			return nil
		}
		m, err := x.readUp(uc, x.ub)
		if err != nil {
			return err
		}
		x.ur, x.uw = 0, m
	}
}

// relayUntilClose streams a body that ends when the shard closes.
func (x *exchange) relayUntilClose(uc *upstream.Conn, head []byte) error {
	if err := x.writeHead(head, x.ub[x.ur:x.uw]); err != nil {
		return err
	}
	for {
		x.ur, x.uw = 0, 0
		m, err := x.readUp(uc, x.ub)
		if err != nil {
			if isEOF(err) {
				return nil // the end of the body
			}
			return err
		}
		if err := x.cc.write(x.ub[:m]); err != nil {
			return err
		}
		x.d.BytesOut += int64(m)
	}
}
