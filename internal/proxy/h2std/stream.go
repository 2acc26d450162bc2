package h2std

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// serveStream routes one HTTP/2 stream (or gRPC call): the routing step,
// then the request goes to the shard over its own protocol, and the
// answer, 1xx and trailers included, comes back as it streams.
func (f *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	grpc := isGRPC(r.Header)
	var d route.Decision
	d.Begin(route.HTTP2, time.Now())
	s := keys.AcquireScratch() // holds the key d points to: given back after Done
	defer keys.ReleaseScratch(s)
	defer f.router.Done(&d)
	if err := f.checkRequest(r); err != nil {
		streamError(w, grpc, err, "")
		return
	}
	kr := keys.HTTPRequest{Req: r}
	if grpc || r.ContentLength == 0 && r.Body == http.NoBody {
		kr.Buffered = emptyBody // body rules never read protobuf
	}
	err := f.router.Route(&d, &kr, s, func() (err error) {
		kr.Buffered, err = f.bufferStreamBody(w, r)
		return err
	})
	if errors.Is(err, route.ErrMustWait) {
		err = f.router.Wait(&d, r.Context().Done(), nil)
	}
	switch {
	case errors.Is(err, answer.ErrClientGone):
	case err != nil:
		streamError(w, grpc, err, "")
	default:
		f.router.Commit(&d)
		f.forwardStream(w, r, &d, grpc)
	}
}

var emptyBody = []byte{}

// checkRequest refuses what Go's HTTP/2 server lets through but a shard
// could read two ways: content-length values that differ or are not plain
// digits (Go takes "+5"), and a declared length over the request limit.
func (f *Server) checkRequest(r *http.Request) error {
	vals := r.Header.Values("Content-Length")
	for _, v := range vals {
		if v != vals[0] || v == "" || strings.TrimLeft(v, "0123456789") != "" {
			return answer.ErrBadRequest
		}
	}
	if limit := f.cfg.MaxRequestBodyBytes; limit > 0 && r.ContentLength > limit {
		return answer.BodyTooLarge(int(min(limit, math.MaxInt32)))
	}
	return nil
}

// bufferStreamBody reads a body for a body rule, up to MaxBodyBytes, and
// leaves it in r for forwarding.
func (f *Server) bufferStreamBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := f.cfg.MaxBodyBytes
	if r.ContentLength > int64(limit) {
		return nil, answer.BodyTooLarge(limit)
	}
	// Bounded in time like an HTTP/1.1 body, and read into one buffer that
	// grows with what arrives (never sized by a declared length).
	rc := http.NewResponseController(w)
	var body []byte
	for {
		_ = rc.SetReadDeadline(time.Now().Add(f.cfg.ClientBodyTimeout))
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := r.Body.Read(body[len(body):min(cap(body), limit+1)])
		body = body[:len(body)+n]
		if len(body) > limit {
			return nil, answer.BodyTooLarge(limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, answer.ErrBadRequest
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	r.Body = io.NopCloser(bytes.NewReader(body))
	if body == nil {
		body = emptyBody
	}
	return body, nil
}

// isGRPC tells a gRPC call by its content type.
func isGRPC(h http.Header) bool { return header.IsGRPCType(h.Get("Content-Type")) }

// streamError answers an HTTP/2 stream with the proxy's own error: JSON as
// for HTTP/1.1, or for a gRPC call a gRPC status in a trailers-only answer.
func streamError(w http.ResponseWriter, grpc bool, err error, shard string) {
	answer.For(err, shard).WriteTo(w, grpc)
}

// forwardStream sends r to its owner and streams the answer to w. It sets
// the status counted for the shard in d, before the body streams (a moved
// stream ends in a panic, past which nothing runs).
func (f *Server) forwardStream(w http.ResponseWriter, r *http.Request, d *route.Decision, grpc bool) {
	b := d.Backend
	ctx, cancel := streamContext(r)
	defer cancel(nil)
	live := f.router.Track(string(d.Key), b.Name, func() { cancel(answer.ErrOwnerMoved) })
	defer f.router.Untrack(live)
	// The upstream timeout bounds waiting for the answer's head; a body
	// (or a gRPC stream) may then flow as long as it does.
	timer := time.AfterFunc(f.cfg.UpstreamTimeout, func() { cancel(answer.ErrShardTimeout) })
	out := outboundRequest(ctx, r, d)
	// 1xx answers come on the transport's goroutine: relayed under a lock,
	// and never after RoundTrip returned (the handler may be done by then).
	var mu sync.Mutex
	done := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, fields textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			if done || code == http.StatusSwitchingProtocols {
				return nil
			}
			h := w.Header()
			copyHeader(h, http.Header(fields))
			header.PrepareAnswer(h, b.Name)
			w.WriteHeader(code)
			clear(h) // a 1xx's fields are not the answer's
			return nil
		},
	})
	resp, err := b.Transport().RoundTrip(out.WithContext(ctx))
	timer.Stop()
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		if r.Context().Err() != nil {
			d.Status = answer.StatusClientGone
			return
		}
		err = answer.FromTransport(ctx, err)
		streamError(w, grpc, err, b.Name)
		d.Status = answer.For(err, b.Name).Status
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgrade has no meaning on an HTTP/2 stream (RFC 9113 §8.6):
		// nothing of it is passed on.
		streamError(w, grpc, answer.ErrBadResponse, b.Name)
		d.Status = http.StatusBadGateway
		return
	}
	h := w.Header()
	clear(h)
	copyHeader(h, resp.Header)
	header.PrepareAnswer(h, b.Name)
	keepOut(h, "Date", "Content-Type")
	d.Status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	copyStreaming(w, resp.Body)
	if errors.Is(context.Cause(ctx), answer.ErrOwnerMoved) {
		endMovedStream(w, grpc)
		return
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// endMovedStream ends a stream cut short because its key moved: a gRPC
// call gets UNAVAILABLE in its trailers (clients retry, and reach the new
// owner); any other stream is reset, so the client cannot take the cut
// body for a whole one.
func endMovedStream(w http.ResponseWriter, grpc bool) {
	if !grpc {
		panic(http.ErrAbortHandler)
	}
	h := w.Header()
	for _, f := range answer.For(answer.ErrOwnerMoved, "").Trailers(nil) {
		h.Set(http.TrailerPrefix+f.Name, f.Value)
	}
}

// streamContext is the call's context: the client's, bounded by
// grpc-timeout when the client set one.
func streamContext(r *http.Request) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(r.Context())
	if d, ok := header.ParseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
		tctx, tcancel := context.WithTimeoutCause(ctx, d, answer.ErrShardTimeout)
		return tctx, func(cause error) { tcancel(); cancel(cause) }
	}
	return ctx, cancel
}

// outboundRequest is r as the shard gets it: same method, target, header
// fields (under the header policy), body and trailers.
func outboundRequest(ctx context.Context, r *http.Request, d *route.Decision) *http.Request {
	u := &url.URL{Scheme: "http", Host: d.Backend.Addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out := (&http.Request{
		Method: r.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: r.Header.Clone(), Body: r.Body, ContentLength: r.ContentLength,
		Host: r.Host, Trailer: r.Trailer,
	}).WithContext(ctx)
	if r.ContentLength == 0 {
		out.Body = nil
	}
	te := r.Header.Get("Te")
	header.Prepare(out.Header, header.Forwarded{ClientIP: header.ClientIP(r.RemoteAddr), TLS: r.TLS != nil, Host: r.Host})
	if strings.EqualFold(te, "trailers") {
		out.Header.Set("Te", "trailers") // gRPC needs it end to end
	}
	header.SetPrevious(out.Header, d.Previous, d.PreviousAddr)
	return out
}

// keepOut keeps Go's HTTP/2 server from adding the named fields when the
// shard did not send them (it adds Date, and sniffs a Content-Type): a nil
// value is written as nothing.
func keepOut(h http.Header, names ...string) {
	for _, name := range names {
		if _, ok := h[name]; !ok {
			h[name] = nil
		}
	}
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k][:0:0], vv...)
	}
}

// copyStreaming copies the body, flushing after every read so that each
// message reaches the client as soon as the shard sent it.
func copyStreaming(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// bufPool holds the buffers answers are copied through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
