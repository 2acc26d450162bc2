package proxy

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Sentinel errors of the data plane. errorStatus is the one place that maps
// them, and errors wrapping them, to status codes.
var (
	errNoShards       = errors.New("no shards")
	errShardNotReady  = errors.New("shard not ready")
	errShardDown      = errors.New("shard unreachable")
	errShardTimeout   = errors.New("shard timeout")
	errShardBusy      = errors.New("shard connection limit reached")
	errBodyTooLarge   = errors.New("request body too large")
	errHeaderTooLarge = errors.New("request headers too large")
	errBadRequest     = errors.New("malformed request")
)

// errorStatus maps a data-plane error to its HTTP status.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, errNoKey), errors.Is(err, errBadBody), errors.Is(err, errBadRequest):
		return fasthttp.StatusBadRequest
	case errors.Is(err, errBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.Is(err, errHeaderTooLarge):
		return fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errNoShards), errors.Is(err, errShardNotReady), errors.Is(err, errShardBusy):
		return fasthttp.StatusServiceUnavailable
	case errors.Is(err, errShardTimeout):
		return fasthttp.StatusGatewayTimeout
	default:
		return fasthttp.StatusBadGateway
	}
}

// upstreamError classifies an error of the upstream client.
func upstreamError(err error) error {
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return errShardDown // never connected: the shard is unreachable, not slow
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return errShardTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return errShardBusy
	default:
		return errShardDown
	}
}

// errorBody is the JSON body of every data-plane error.
type errorBody struct {
	Error string   `json:"error"`
	Shard string   `json:"shard,omitempty"`
	Tried []string `json:"tried,omitempty"`
	Rule  string   `json:"rule,omitempty"`
	Limit int      `json:"limit,omitempty"`
}

// writeError answers ctx with err's status and JSON body. shard is the
// owner's name, or "" when none was chosen.
func (p *Proxy) writeError(ctx *fasthttp.RequestCtx, err error, shard string) {
	status := errorStatus(err)
	body := errorBody{Error: err.Error(), Shard: shard}
	ctx.Response.Reset() // drop whatever a failed upstream exchange left
	var ke *keyError
	switch {
	case errors.Is(err, errNoKey):
		body.Error, body.Tried = errNoKey.Error(), p.keys.Rules()
	case errors.As(err, &ke) && ke.rule != "":
		body.Rule = ke.rule
	case errors.Is(err, errBodyTooLarge):
		body.Limit = p.cfg.MaxBodyBytes
	case status == fasthttp.StatusServiceUnavailable && shard != "":
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if errors.Is(err, errShardBusy) {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	b, _ := json.Marshal(body)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	if shard != "" {
		ctx.Response.Header.Set(HeaderShard, shard)
	}
	ctx.Response.SetBodyRaw(append(b, '\n'))
}

// serverError answers errors that fasthttp meets before the handler runs,
// such as an oversized body, in the same JSON shape.
func (p *Proxy) serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p.metrics.keyError("body_too_large")
		err = errBodyTooLarge
	case errors.As(err, &small):
		err = errHeaderTooLarge
	default:
		err = errBadRequest
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
