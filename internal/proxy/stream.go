package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serveStream routes one HTTP/2 stream (or gRPC call): key, owner, then the
// request goes to the shard over its own protocol, and the answer, 1xx and
// trailers included, comes back as it streams.
func (p *Proxy) serveStream(w http.ResponseWriter, r *http.Request) {
	grpc := isGRPC(r.Header)
	snap := p.snap.Load()
	if snap == nil || len(snap.backends) == 0 {
		streamError(w, grpc, ErrNoShards, "")
		return
	}
	kr := HTTPKeyRequest{Req: r}
	if grpc || r.ContentLength == 0 && r.Body == http.NoBody {
		kr.Buffered = emptyBody // body rules never read protobuf
	}
	s := AcquireScratch()
	key, err := p.keys.Key(kr, s)
	if errors.Is(err, errNeedBody) {
		if kr.Buffered, err = p.bufferStreamBody(w, r); err == nil {
			key, err = p.keys.Key(kr, s)
		}
	}
	k := string(key) // key may point into s
	ReleaseScratch(s)
	if err != nil {
		p.metrics.keyErrorFor(err)
		streamError(w, grpc, err, "")
		return
	}
	p.routeStream(w, r, snap, []byte(k), grpc)
}

// routeStream forwards a stream to the owner of key, holding it for a
// not-ready owner when --owner-wait allows.
func (p *Proxy) routeStream(w http.ResponseWriter, r *http.Request, snap *snapshot, key []byte, grpc bool) {
	shard, i := ownerOf(snap, key)
	if !shard.Ready {
		held, j, outcome := p.awaitOwner(snap, key, r.Context().Done(), nil)
		switch outcome {
		case waitServed:
			snap, i = held, j
			shard = &snap.table.Shards[i]
		case waitGone:
			return
		default:
			snap.backends[i].metrics.countAs(http.StatusServiceUnavailable, protoH2)
			streamError(w, grpc, ErrShardNotReady, shard.Name)
			return
		}
	}
	b := snap.backends[i]
	p.hot.sample(i, key)
	var prev previousOwner
	if name, addr, moved := snap.table.Previous(key, shard); moved {
		prev = previousOwner{name, addr}
		b.metrics.handoff.Inc()
	}
	start := time.Now()
	status := p.forwardStream(w, r, b, grpc, string(key), prev)
	b.metrics.countAs(status, protoH2)
	b.metrics.duration.Observe(time.Since(start).Seconds())
}

// previousOwner is the key's owner before a reshard, when it moved.
type previousOwner struct{ name, addr string }

// bufferStreamBody reads a body for a body rule, up to MaxBodyBytes, and
// leaves it in r for forwarding.
func (p *Proxy) bufferStreamBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := p.cfg.MaxBodyBytes
	if r.ContentLength > int64(limit) {
		return nil, BodyTooLarge(limit)
	}
	// Bounded in time like an HTTP/1.1 body, and read into one buffer that
	// grows with what arrives (never sized by a declared length).
	rc := http.NewResponseController(w)
	var body []byte
	for {
		_ = rc.SetReadDeadline(time.Now().Add(p.cfg.ClientBodyTimeout))
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := r.Body.Read(body[len(body):min(cap(body), limit+1)])
		body = body[:len(body)+n]
		if len(body) > limit {
			return nil, BodyTooLarge(limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, ErrBadRequest
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
func isGRPC(h http.Header) bool { return isGRPCType(h.Get("Content-Type")) }

// gRPC status codes the proxy answers with.
const (
	grpcInvalidArgument  = 3
	grpcDeadlineExceeded = 4
	grpcUnavailable      = 14
	grpcInternal         = 13
)

// grpcCode maps an answer of the proxy to a gRPC status.
func grpcCode(a Answer) int {
	switch a.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return grpcInvalidArgument
	case http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return grpcUnavailable
	}
	return grpcInternal
}

// streamError answers an HTTP/2 stream with the proxy's own error: JSON as
// for HTTP/1.1, or for a gRPC call a gRPC status in a trailers-only answer.
func streamError(w http.ResponseWriter, grpc bool, err error, shard string) {
	a := AnswerFor(err, shard)
	if !grpc {
		a.Write(w)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(a)))
	h.Set("Grpc-Message", grpcEscape(a.Body.Error))
	if shard != "" {
		h.Set(HeaderShard, shard)
	}
	w.WriteHeader(http.StatusOK)
}

// grpcEscape percent-encodes a grpc-message value (gRPC over HTTP/2 spec).
func grpcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)>>4, 16)+strconv.FormatUint(uint64(c)&15, 16)))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// forwardStream sends r to b and streams the answer to w. It returns the
// status counted for the shard.
func (p *Proxy) forwardStream(w http.ResponseWriter, r *http.Request, b *backend, grpc bool, key string, prev previousOwner) int {
	ctx, cancel := p.streamContext(r)
	defer cancel(nil)
	live := p.live.add(key, b.name, func() { cancel(ErrOwnerMoved) })
	defer p.live.remove(live)
	p.endIfMoved(live) // a ring change between routing and now
	// The upstream timeout bounds waiting for the answer's head; a body
	// (or a gRPC stream) may then flow as long as it does.
	timer := time.AfterFunc(p.cfg.UpstreamTimeout, func() { cancel(ErrShardTimeout) })
	out := outboundRequest(ctx, r, b, prev)
	// 1xx answers come on the transport's goroutine: relayed under a lock,
	// and never after RoundTrip returned (the handler may be done by then).
	var mu sync.Mutex
	done := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			if done || code == http.StatusSwitchingProtocols {
				return nil
			}
			h := w.Header()
			copyHeader(h, http.Header(header))
			w.WriteHeader(code)
			clear(h) // a 1xx's fields are not the answer's
			return nil
		},
	})
	resp, err := b.transport().RoundTrip(out.WithContext(ctx))
	timer.Stop()
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		if r.Context().Err() != nil {
			return 499 // the client went away first
		}
		err = streamUpstreamErr(ctx, err)
		a := AnswerFor(err, b.name)
		streamError(w, grpc, err, b.name)
		return a.Status
	}
	defer resp.Body.Close()
	h := w.Header()
	clear(h)
	copyHeader(h, resp.Header)
	StripHopByHop(h)
	h.Set(HeaderShard, b.name)
	w.WriteHeader(resp.StatusCode)
	copyStreaming(w, resp.Body)
	if errors.Is(context.Cause(ctx), ErrOwnerMoved) {
		endMovedStream(w, grpc)
		return resp.StatusCode
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return resp.StatusCode
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
	h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(grpcUnavailable))
	h.Set(http.TrailerPrefix+"Grpc-Message", grpcEscape(ErrOwnerMoved.Error()))
}

// streamContext is the call's context: the client's, bounded by
// grpc-timeout when the client set one.
func (p *Proxy) streamContext(r *http.Request) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(r.Context())
	if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
		tctx, tcancel := context.WithTimeoutCause(ctx, d, ErrShardTimeout)
		return tctx, func(cause error) { tcancel(); cancel(cause) }
	}
	return ctx, cancel
}

// parseGRPCTimeout parses "100m", "5S", ... (gRPC over HTTP/2 spec).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// streamUpstreamErr maps a transport failure to the proxy's answer.
func streamUpstreamErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), ErrOwnerMoved):
		return ErrOwnerMoved
	case errors.Is(context.Cause(ctx), ErrShardTimeout), errors.Is(ctx.Err(), context.DeadlineExceeded), isTimeout(err):
		return ErrShardTimeout
	case errors.Is(err, errDial):
		return ErrShardDown
	}
	return ErrShardDown
}

// outboundRequest is r as the shard gets it: same method, target, header
// fields (under the header policy), body and trailers.
func outboundRequest(ctx context.Context, r *http.Request, b *backend, prev previousOwner) *http.Request {
	u := &url.URL{Scheme: "http", Host: b.addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out := (&http.Request{
		Method: r.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: r.Header.Clone(), Body: r.Body, ContentLength: r.ContentLength,
		Host: r.Host, Trailer: r.Trailer,
	}).WithContext(ctx)
	if r.ContentLength == 0 {
		out.Body = nil
	}
	te := r.Header.Get("Te")
	PrepareHeader(out.Header, Forwarded{ClientIP: ClientIP(r.RemoteAddr), TLS: r.TLS != nil, Host: r.Host})
	if strings.EqualFold(te, "trailers") {
		out.Header.Set("Te", "trailers") // gRPC needs it end to end
	}
	setPrevious(out.Header, prev)
	return out
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
	bp := getBuf()
	defer putBuf(bp)
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

// setPrevious sets the handoff headers (and drops a client's own).
func setPrevious(h http.Header, prev previousOwner) {
	h.Del(HeaderPrevious)
	h.Del(HeaderPreviousAddress)
	if prev.name != "" {
		h.Set(HeaderPrevious, prev.name)
		if prev.addr != "" {
			h.Set(HeaderPreviousAddress, prev.addr)
		}
	}
}
