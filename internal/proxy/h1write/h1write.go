// Package h1write writes the HTTP/1.1 heads the proxy forwards, with the
// header policy (package header) applied, and the proxy's own answers.
package h1write

import (
	"net/http"
	"strconv"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
)

// Heads are forwarded as they were received, field line by field line,
// except for the header policy (package header): hop-by-hop fields dropped,
// X-Forwarded-* added, X-Shard on answers. Everything here appends to a
// caller's buffer and does not allocate once the buffer has grown.

// RequestHead says what the engine decided about a request it forwards.
type RequestHead struct {
	// ClientIP is the client's address, added to X-Forwarded-For.
	ClientIP string
	// TLS: the client spoke TLS to us (X-Forwarded-Proto: https).
	TLS bool
	// HostFallback is the Host to send when the client sent none (HTTP/1.0).
	HostFallback string
	// Upgrade keeps Upgrade and says "Connection: Upgrade" (WebSocket).
	Upgrade bool
	// DropExpect drops Expect: the proxy answered 100-continue itself.
	DropExpect bool
	// Previous and PreviousAddr name the key's owner before a reshard
	// (X-Shard-Previous, X-Shard-Previous-Address); "" when it did not move.
	Previous, PreviousAddr string
	// Traceparent replaces the client's: the proxy's span is the shard's
	// parent (a sampled request); nil leaves the client's untouched.
	Traceparent []byte
}

// AppendRequest appends the head the shard receives for h.
func AppendRequest(dst []byte, h *h1.Request, rh RequestHead) []byte {
	dst = append(dst, h.Method...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	var hasXFF, hasProto, hasHost bool
	hop := h.Flags&(h1.FlagHopByHop|h1.FlagConnOther) != 0
	cl := h.Flags.Has(h1.FlagContentLengthRepeated)
	for i := range h.Fields {
		f := &h.Fields[i]
		class := header.Classify(f.Name)
		if class != header.HopByHop && hop && namedByConnection(&h.Head, f.Name) {
			continue // named by Connection: hop-by-hop whatever its class (a named X-Forwarded-* too; ours is added below)
		}
		switch class {
		case header.HopByHop:
			if !keepHop(f.Name, rh.Upgrade) {
				continue
			}
		case header.ForwardedFor:
			hasXFF = true
			continue // one line with every value, below
		case header.ForwardedProto:
			hasProto = true
		case header.ForwardedHost:
			hasHost = true
		case header.PreviousOwner:
			continue // ours to set: a client must not point a shard elsewhere
		default:
			if cl && h1.EqualFold(f.Name, "Content-Length") {
				continue // several identical values: one canonical line below
			}
			if rh.DropExpect && h1.EqualFold(f.Name, "Expect") {
				continue
			}
			if rh.Traceparent != nil && h1.EqualFold(f.Name, "Traceparent") {
				continue // ours, below
			}
		}
		dst = append(dst, f.Line...)
	}
	if h.Host == nil && rh.HostFallback != "" {
		dst = AppendField(dst, "Host", rh.HostFallback)
	}
	if cl {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, h.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	dst = appendXFF(dst, h, hasXFF, rh.ClientIP)
	if !hasProto {
		if rh.TLS {
			dst = append(dst, "X-Forwarded-Proto: https\r\n"...)
		} else {
			dst = append(dst, "X-Forwarded-Proto: http\r\n"...)
		}
	}
	if !hasHost && len(h.Host) > 0 {
		dst = append(dst, "X-Forwarded-Host: "...)
		dst = append(dst, h.Host...)
		dst = append(dst, "\r\n"...)
	}
	return appendDecided(dst, rh)
}

// appendDecided appends the fields the proxy decides and the end of the
// head: the handoff, the trace context, Connection for an upgrade.
func appendDecided(dst []byte, rh RequestHead) []byte {
	if rh.Previous != "" {
		dst = AppendField(dst, header.Previous, rh.Previous)
		if rh.PreviousAddr != "" {
			dst = AppendField(dst, header.PreviousAddress, rh.PreviousAddr)
		}
	}
	if rh.Traceparent != nil {
		dst = append(dst, "Traceparent: "...)
		dst = append(dst, rh.Traceparent...)
		dst = append(dst, "\r\n"...)
	}
	if rh.Upgrade {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// namedByConnection tells whether a Connection field of h names the field
// name, making it hop-by-hop; Host and the framing are never dropped so
// (header.ConnectionMayName): the body goes on framed as it came.
func namedByConnection(h *h1.Head, name []byte) bool {
	return header.ConnectionMayName(name) && h.HopByHop(name)
}

// keepHop tells which hop-by-hop fields still travel: the request's framing
// (a chunked body is relayed as it is) and, for an upgrade, Upgrade.
func keepHop(name []byte, upgrade bool) bool {
	return h1.EqualFold(name, "Transfer-Encoding") || upgrade && h1.EqualFold(name, "Upgrade")
}

// appendXFF appends one X-Forwarded-For line: the values the client sent,
// in order, then the client's address.
func appendXFF(dst []byte, h *h1.Request, prior bool, ip string) []byte {
	dst = append(dst, "X-Forwarded-For: "...)
	if prior {
		for i := range h.Fields {
			if f := &h.Fields[i]; len(f.Value) > 0 && h1.EqualFold(f.Name, "X-Forwarded-For") {
				dst = append(dst, f.Value...)
				dst = append(dst, ", "...)
			}
		}
	}
	dst = append(dst, ip...)
	return append(dst, "\r\n"...)
}

// AppendField appends the field line "name: value".
func AppendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// ResponseHead says how a response head is rewritten for the client.
type ResponseHead struct {
	// Shard names the shard that answered (X-Shard); "" for none.
	Shard string
	// Closing adds "Connection: close"; KeepAlive10 adds
	// "Connection: keep-alive" for an HTTP/1.0 client that asked for it.
	Closing, KeepAlive10 bool
	// RelayChunked keeps Transfer-Encoding (the chunked body goes on as
	// it is); otherwise the body is decoded (HTTP/1.0 client).
	RelayChunked bool
	// Upgrade keeps Upgrade and says "Connection: Upgrade" (a 101).
	Upgrade bool
}

// AppendResponse appends the head the client receives for r.
func AppendResponse(dst []byte, r *h1.Response, rh ResponseHead) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, r.Reason...)
	dst = append(dst, "\r\n"...)
	hop := r.Flags&(h1.FlagHopByHop|h1.FlagConnOther|h1.FlagTransferEncoding) != 0
	for i := range r.Fields {
		f := &r.Fields[i]
		class := header.Classify(f.Name)
		if class != header.HopByHop && hop && namedByConnection(&r.Head, f.Name) {
			continue
		}
		switch class {
		case header.HopByHop:
			if !keepResponseHop(f.Name, rh) {
				continue
			}
		case header.ShardName:
			if rh.Shard != "" {
				continue // ours is the one that counts
			}
		}
		dst = append(dst, f.Line...)
	}
	if rh.Shard != "" {
		dst = AppendField(dst, header.Shard, rh.Shard)
	}
	switch {
	case rh.Upgrade:
		dst = append(dst, "Connection: Upgrade\r\n"...)
	case rh.Closing:
		dst = append(dst, "Connection: close\r\n"...)
	case rh.KeepAlive10:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func keepResponseHop(name []byte, rh ResponseHead) bool {
	if h1.EqualFold(name, "Transfer-Encoding") {
		return rh.RelayChunked
	}
	return rh.Upgrade && h1.EqualFold(name, "Upgrade")
}

// AppendAnswer appends a complete response for one of the proxy's own
// answers, and the length of its body.
func AppendAnswer(dst []byte, a answer.Answer, closing bool) ([]byte, int) {
	body := a.JSON()
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(a.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(a.Status)...)
	dst = append(dst, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n"...)
	if a.RetryAfter {
		dst = append(dst, "Retry-After: 1\r\n"...)
	}
	if a.Body.Shard != "" {
		dst = AppendField(dst, header.Shard, a.Body.Shard)
	}
	if closing {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, body...), len(body)
}
