package http1

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1write"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
)

// bridge forwards an HTTP/1.1 request to a shard that speaks HTTP/2 (h2c),
// where bytes cannot be relayed as they are: the request goes through the
// backend's HTTP/2 transport and the answer is written back as HTTP/1.1,
// with its body streamed (Content-Length when the shard gave one, chunked
// otherwise, so trailers survive) and 1xx answers relayed.
func (x *exchange) bridge() bool {
	cc := x.cc
	if x.upgrade {
		return x.fail(nil, answer.ErrBadRequest) // no WebSocket over an HTTP/2 shard
	}
	req, body, err := x.bridgeRequest()
	if err != nil {
		return x.fail(nil, err)
	}
	// The transport reads the body, and calls the 1xx hook, on goroutines
	// of its own: both are stopped, and waited for, before this returns.
	defer body.stop()
	hook := &hook1xx{x: x}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	timer := time.AfterFunc(cc.s.cfg.UpstreamTimeout, func() { cancel(answer.ErrShardTimeout) })
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: hook.got})
	resp, err := x.b.Transport().RoundTrip(req.WithContext(ctx))
	timer.Stop()
	hook.close()
	if err != nil {
		body.stop()
		return x.fail(nil, answer.FromTransport(ctx, err))
	}
	defer resp.Body.Close()
	// Chunked carries trailers, and a body of unknown length, to an
	// HTTP/1.1 client; an HTTP/1.0 one sees the end as the close.
	chunked := x.minor == 1 && (resp.ContentLength < 0 || len(resp.Trailer) > 0)
	closing := x.clientClose || x.minor == 0 && resp.ContentLength < 0 || cc.s.draining.Load() ||
		!body.finished() // the shard answered before the body ended
	x.d.Status = resp.StatusCode
	x.d.ShardAnswered()
	x.headSent = true
	if err := cc.write(bridgeHead(cc.scratch(), resp, x.b.Name, closing, chunked)); err != nil {
		return false
	}
	if !x.isHead && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		if err := x.bridgeBody(resp, chunked); err != nil {
			return false
		}
	}
	body.stop()
	return !closing && cc.bodyDone()
}

// hook1xx relays the shard's 1xx answers, from the transport's goroutine,
// until close; close waits for a relay under way.
type hook1xx struct {
	x      *exchange
	mu     sync.Mutex
	closed bool
	buf    []byte
}

func (h *hook1xx) got(code int, fields textproto.MIMEHeader) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.x.minor == 0 || code == http.StatusSwitchingProtocols {
		return nil
	}
	b := append(h.buf[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	hdr := http.Header(fields).Clone() // the transport's
	header.PrepareAnswer(hdr, h.x.b.Name)
	b = appendHeader(b, hdr)
	h.buf = append(b, "\r\n"...)
	return h.x.cc.write(h.buf)
}

func (h *hook1xx) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// bridgeRequest builds the shard's request from the HTTP/1.1 head (before
// any body byte is read, since rb is then reused).
func (x *exchange) bridgeRequest() (*http.Request, *h1BodyReader, error) {
	cc := x.cc
	h := &cc.in.head
	u, err := url.ParseRequestURI(string(h.Target))
	if err != nil {
		return nil, nil, answer.ErrBadRequest
	}
	u.Scheme, u.Host = "http", x.b.Addr
	if x.b.TLS {
		u.Scheme = "https" // the transport takes the connection from Backend.Dial
	}
	hdr := make(http.Header, len(h.Fields))
	for i := range h.Fields {
		f := &h.Fields[i]
		if !h.HopByHop(f.Name) && !h1.EqualFold(f.Name, "Host") && !(cc.in.continued && h1.EqualFold(f.Name, "Expect")) {
			hdr.Add(string(f.Name), string(f.Value))
		}
	}
	header.Prepare(hdr, header.Forwarded{ClientIP: cc.ip, TLS: cc.tls, Host: string(h.Host)})
	header.SetPrevious(hdr, x.d.Previous, x.d.PreviousAddr)
	if tp := x.d.Trace.OutgoingString(); tp != "" {
		hdr.Set("Traceparent", tp) // the proxy's span is the shard's parent
	}
	host := string(h.Host)
	if host == "" {
		host = x.b.Addr
	}
	req := &http.Request{Method: string(h.Method), URL: u, Header: hdr, Host: host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1}
	switch {
	case cc.bodyDone() && cc.in.raw == nil:
		req.ContentLength = 0
	case cc.in.raw != nil:
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(cc.in.body)), int64(len(cc.in.body))
		x.bodyIn.Store(int64(len(cc.in.body)))
	default:
		req.ContentLength = cc.bodyLength()
		body := &h1BodyReader{cc: cc}
		req.Body = io.NopCloser(body)
		return req, body, nil
	}
	return req, nil, nil
}

// h1BodyReader reads the client's request body, decoded, for the bridge,
// on the transport's goroutine. stop ends it and waits for a read under
// way, so that the connection's buffers are the engine's again. A nil
// *h1BodyReader (no body) does nothing.
type h1BodyReader struct {
	cc      *clientConn
	mu      sync.Mutex
	rest    []byte
	stopped bool
	eof     atomic.Bool // the whole body was read
}

// finished tells, without waiting for a read under way, whether the whole
// body was read; true without a body.
func (r *h1BodyReader) finished() bool { return r == nil || r.eof.Load() }

func (r *h1BodyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.rest) == 0 {
		if r.stopped {
			return 0, errBodyStopped
		}
		_, data, err := r.cc.nextBody()
		if err == io.EOF {
			r.eof.Store(true)
		}
		if err != nil {
			return 0, err
		}
		r.rest = data
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	r.cc.x.bodyIn.Add(int64(n))
	return n, nil
}

func (r *h1BodyReader) stop() {
	if r == nil {
		return
	}
	r.cc.bodyStop.Store(true)
	_ = r.cc.nc.SetReadDeadline(time.Unix(1, 0))
	r.mu.Lock()
	r.stopped, r.rest = true, nil
	r.mu.Unlock()
}

// bridgeHead writes an HTTP/1.1 head for an answer that came over HTTP/2.
// Field names are in canonical case (HTTP/2 has only lowercase) and sorted.
func bridgeHead(b []byte, resp *http.Response, shard string, closing, chunked bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.StatusCode), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(resp.StatusCode)...)
	b = append(b, "\r\n"...)
	h := resp.Header.Clone()
	header.PrepareAnswer(h, shard)
	h.Del("Content-Length")
	h.Del("Trailer")
	b = appendHeader(b, h)
	switch {
	case chunked:
		for k := range resp.Trailer {
			b = h1write.AppendField(b, "Trailer", k)
		}
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case resp.ContentLength >= 0:
		b = h1write.AppendField(b, "Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendHeader(b []byte, h http.Header) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = h1write.AppendField(b, k, v)
		}
	}
	return b
}

// bridgeBody streams the answer's body, chunked when asked, then its
// trailers.
func (x *exchange) bridgeBody(resp *http.Response, chunked bool) error {
	cc := x.cc
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf[:len(buf)-32])
		if n > 0 {
			out := buf[:n]
			if chunked {
				out = append(strconv.AppendInt(cc.scratch(), int64(n), 16), "\r\n"...)
				out = append(append(out, buf[:n]...), "\r\n"...)
			}
			if werr := cc.write(out); werr != nil {
				return werr
			}
			x.d.BytesOut += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !chunked {
		return nil
	}
	end := append(cc.scratch(), "0\r\n"...)
	end = appendHeader(end, resp.Trailer)
	return cc.write(append(end, "\r\n"...))
}
