package proxy

import (
	"errors"
	"net"
	"strconv"

	"github.com/valyala/fasthttp"
)

// upstreamError classifies an error of the upstream client.
func upstreamError(err error) error {
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return ErrShardDown // never connected: the shard is unreachable, not slow
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return ErrShardTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return ErrShardBusy
	default:
		return ErrShardDown
	}
}

// writeError answers ctx with err's answer. shard is the owner's name, or
// "" when none was chosen.
func (p *Proxy) writeError(ctx *fasthttp.RequestCtx, err error, shard string) {
	a := AnswerFor(err, shard)
	ctx.Response.Reset() // drop whatever a failed upstream exchange left
	if a.RetryAfter {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	ctx.SetStatusCode(a.Status)
	ctx.SetContentType("application/json")
	if shard != "" {
		ctx.Response.Header.Set(HeaderShard, shard)
	}
	ctx.Response.SetBodyRaw(a.JSON())
}

// serverError answers errors that fasthttp meets before the handler runs,
// such as an oversized body, in the same JSON shape.
func (p *Proxy) serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p.metrics.keyError("body_too_large")
		err = BodyTooLarge(p.cfg.MaxBodyBytes)
	case errors.As(err, &small):
		err = ErrHeaderTooLarge
	default:
		err = ErrBadRequest
	}
	p.writeError(ctx, err, "")
	ctx.SetConnectionClose()
}

// codeString avoids strconv allocations for the status codes a proxy sees.
func codeString(code int) string {
	if code >= 100 && code < 600 {
		return codeStrings[code-100]
	}
	return strconv.Itoa(code)
}

var codeStrings = func() (s [500]string) {
	for i := range s {
		s[i] = strconv.Itoa(i + 100)
	}
	return s
}()
