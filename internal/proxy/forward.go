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
		p.writeError(ctx, ErrNoShards, "")
		return
	}
	s := AcquireScratch()
	defer ReleaseScratch(s)
	key, err := p.keys.Key(&ctx.Request, s)
	if err != nil {
		if errors.Is(err, ErrBadBody) {
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
		p.writeError(ctx, ErrShardNotReady, shard.Name)
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
		b.metrics.count(AnswerFor(err, b.name).Status)
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

// prepareRequest strips hop-by-hop headers and adds X-Forwarded-*.
func prepareRequest(ctx *fasthttp.RequestCtx, s *Scratch) {
	h := &ctx.Request.Header
	// Most requests carry no hop-by-hop header; one scan of the raw header
	// block is much cheaper than a Del per name, each of which normalizes
	// the name and walks every header.
	if h.ConnectionClose() || rawHasHopHeader(h.RawHeaders()) {
		ConnectionTokens(h.Peek("Connection"), func(tok []byte) { h.DelBytes(tok) })
		for _, name := range hopByHop {
			if name != "Transfer-Encoding" { // fasthttp frames the body itself
				h.Del(name)
			}
		}
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
		h.Set("X-Forwarded-Proto", Forwarded{TLS: ctx.IsTLS()}.Proto())
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
		if IsHopByHop(name) && !(bytes.EqualFold(name, []byte("Connection")) && isPlainConnection(value)) &&
			!bytes.EqualFold(name, []byte("Transfer-Encoding")) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	ConnectionTokens(h.Peek("Connection"), func(tok []byte) { h.DelBytes(tok) })
	for _, name := range hopByHop {
		if name != "Transfer-Encoding" {
			h.Del(name)
		}
	}
}

// rawHasHopHeader reports whether a raw header block names a hop-by-hop
// header.
func rawHasHopHeader(raw []byte) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && IsHopByHop(line[:i]) {
			return true
		}
	}
	return false
}

// isPlainConnection reports whether a Connection value only says keep-alive
// or close, naming no other header.
func isPlainConnection(v []byte) bool {
	v = bytes.TrimSpace(v)
	return bytes.EqualFold(v, []byte("keep-alive")) || bytes.EqualFold(v, []byte("close"))
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
