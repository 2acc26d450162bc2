package proxy

import (
	"bytes"
	"errors"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// ServeFastHTTP routes one request: one snapshot load, key extraction, owner
// lookup, forward. Nothing here allocates on the success path.
func (p *Proxy) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	snap := p.snap.Load()
	if snap == nil || len(snap.backends) == 0 {
		p.writeError(ctx, errNoShards, "")
		return
	}
	s := AcquireScratch()
	defer ReleaseScratch(s)
	key, err := p.keys.Key(&ctx.Request, s)
	if err != nil {
		if errors.Is(err, errBadBody) {
			p.metrics.keyError("bad_body")
		} else {
			p.metrics.keyError("no_key")
		}
		p.writeError(ctx, err, "")
		return
	}
	shard, i, _ := snap.table.Owner(key)
	b := snap.backends[i]
	if !shard.Ready {
		b.metrics.count(fasthttp.StatusServiceUnavailable)
		p.writeError(ctx, errShardNotReady, shard.Name)
		return
	}
	p.forward(ctx, b, s)
}

// forward sends ctx.Request to b and copies the answer into ctx.Response.
// s is scratch space; the key it may hold is no longer needed.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, b *backend, s *Scratch) {
	req, resp := &ctx.Request, &ctx.Response
	clientClose := req.Header.ConnectionClose()
	prepareRequest(ctx, s)

	err := b.client.DoTimeout(req, resp, p.cfg.UpstreamTimeout)
	// ctx.Time() is when the request arrived: one clock read fewer, and
	// what the metric promises.
	b.metrics.duration.Observe(time.Since(ctx.Time()).Seconds())
	if err != nil {
		err = upstreamError(err)
		b.metrics.count(errorStatus(err))
		p.writeError(ctx, err, b.name)
	} else {
		stripHopHeaders(&resp.Header)
		// The shard closing its connection says nothing about ours.
		resp.Header.ResetConnectionClose()
		resp.Header.Set(HeaderShard, b.name)
		b.metrics.count(resp.StatusCode())
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
}

// hopHeaders are meaningful only for one connection and are never forwarded
// (RFC 9110 §7.6.1). fasthttp handles Connection and Transfer-Encoding itself.
var hopHeaders = []string{
	"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Upgrade",
}

// prepareRequest strips hop-by-hop headers and adds X-Forwarded-*.
func prepareRequest(ctx *fasthttp.RequestCtx, s *Scratch) {
	h := &ctx.Request.Header
	// Most requests carry no hop-by-hop header; one scan of the raw header
	// block is much cheaper than a Del per name, each of which normalizes
	// the name and walks every header.
	if h.ConnectionClose() || rawHasHopHeader(h.RawHeaders()) {
		dropConnectionTokens(h.Peek("Connection"), h.Del)
		for _, name := range hopHeaders {
			h.Del(name)
		}
		h.Del("Connection")
	}

	xff := append(s.buf[:0], h.Peek("X-Forwarded-For")...)
	if len(xff) > 0 {
		xff = append(xff, ", "...)
	}
	xff = appendIP(xff, ctx.RemoteAddr())
	h.SetBytesV("X-Forwarded-For", xff)
	s.buf = xff
	// An edge proxy in front of us knows the original scheme and host
	// better than we do, so existing values are kept.
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		if ctx.IsTLS() {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if len(h.Peek("X-Forwarded-Host")) == 0 {
		if host := h.Host(); len(host) > 0 {
			h.SetBytesV("X-Forwarded-Host", host)
		}
	}
}

// stripHopHeaders removes hop-by-hop headers from a shard's response.
func stripHopHeaders(h *fasthttp.ResponseHeader) {
	found := false
	for name, value := range h.All() {
		// "Connection: keep-alive" (sent by most servers) names no header.
		if isHopName(name) && !(equalFold(name, "Connection") && isPlainConnection(value)) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	dropConnectionTokens(h.Peek("Connection"), h.Del)
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// rawHasHopHeader reports whether a raw header block names a hop-by-hop
// header (or Connection).
func rawHasHopHeader(raw []byte) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && isHopName(line[:i]) {
			return true
		}
	}
	return false
}

// isHopName reports whether name is Connection or one of hopHeaders.
func isHopName(name []byte) bool {
	switch len(name) {
	case 2, 7, 10, 16, 18, 19:
	default:
		return false
	}
	if equalFold(name, "Connection") {
		return true
	}
	for _, h := range hopHeaders {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// isPlainConnection reports whether a Connection value only says keep-alive
// or close, naming no other header.
func isPlainConnection(v []byte) bool {
	v = bytes.TrimSpace(v)
	return equalFold(v, "keep-alive") || equalFold(v, "close")
}

// dropConnectionTokens deletes the headers that a Connection header lists.
func dropConnectionTokens(conn []byte, del func(string)) {
	for len(conn) > 0 {
		var tok []byte
		if i := bytes.IndexByte(conn, ','); i >= 0 {
			tok, conn = conn[:i], conn[i+1:]
		} else {
			tok, conn = conn, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || equalFold(tok, "close") || equalFold(tok, "keep-alive") {
			continue
		}
		del(string(tok))
	}
}

func equalFold(b []byte, s string) bool {
	return len(b) == len(s) && bytes.EqualFold(b, []byte(s))
}

func appendIP(dst []byte, addr net.Addr) []byte {
	switch a := addr.(type) {
	case *net.TCPAddr:
		if ip4 := a.IP.To4(); ip4 != nil {
			return fasthttp.AppendIPv4(dst, ip4)
		}
		return append(dst, a.IP.String()...)
	case nil:
		return dst
	default:
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			return append(dst, addr.String()...)
		}
		return append(dst, host...)
	}
}
