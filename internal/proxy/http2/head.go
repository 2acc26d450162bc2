package http2

import (
	"strings"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"golang.org/x/net/http2/hpack"
)

// outboundHead is the request head as the shard gets it: the
// pseudo-fields and fields as received, under the header policy (package
// header): no hop-by-hop field, X-Forwarded-*, a client's own
// X-Shard-Previous* dropped.
func (c *clientConn) outboundHead(out []hpack.HeaderField, f *h2hpack.Block, rq h2hpack.Request) []hpack.HeaderField {
	var authority, xff string
	proto, host := false, false
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":scheme":
			hf.Value = "http"
		case ":authority":
			authority = hf.Value
		}
		switch header.Classify(hf.Name) {
		case header.HopByHop, header.PreviousOwner:
			continue
		case header.ForwardedFor:
			xff = header.JoinComma(xff, hf.Value)
			continue
		case header.ForwardedProto:
			proto = true
		case header.ForwardedHost:
			host = true
		}
		out = append(out, hf)
	}
	if rq.TE {
		out = append(out, hpack.HeaderField{Name: "te", Value: "trailers"}) // gRPC needs it end to end
	}
	out = append(out, hpack.HeaderField{Name: "x-forwarded-for", Value: header.JoinComma(xff, c.ip)})
	if !proto {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-proto", Value: "http"})
	}
	if !host && authority != "" {
		out = append(out, hpack.HeaderField{Name: "x-forwarded-host", Value: authority})
	}
	return out
}

// setTraceparent makes tp the head's traceparent (the proxy's span is
// the shard's parent); "" leaves the head as it is.
func setTraceparent(h []hpack.HeaderField, tp string) []hpack.HeaderField {
	if tp == "" {
		return h
	}
	for i := range h {
		if h[i].Name == "traceparent" {
			h[i].Value = tp
			return h
		}
	}
	return append(h, hpack.HeaderField{Name: "traceparent", Value: tp})
}

// appendPrevious appends the handoff fields when the key moved (name is
// the previous owner, "" when it did not).
func appendPrevious(h []hpack.HeaderField, name, addr string) []hpack.HeaderField {
	if name == "" {
		return h
	}
	h = append(h, hpack.HeaderField{Name: header.PreviousLower, Value: name})
	if addr != "" {
		h = append(h, hpack.HeaderField{Name: header.PreviousAddressLower, Value: addr})
	}
	return h
}

// appendAnswerFields appends an answer's or trailer's fields under the
// header policy: hop-by-hop fields dropped, and a shard's own X-Shard
// when the proxy sets its own. HTTP/2 has no Connection field (RFC 9113
// §8.2.2); a shard that sends one anyway gets it dropped with the fields it
// names, as from an HTTP/1.1 shard and through the bridge.
func appendAnswerFields(dst, fields []hpack.HeaderField, dropShard bool) []hpack.HeaderField {
	conn := false
	for _, hf := range fields {
		conn = conn || isConnection(hf.Name)
	}
	for _, hf := range fields {
		switch header.Classify(hf.Name) {
		case header.HopByHop:
			continue
		case header.ShardName:
			if dropShard {
				continue
			}
		}
		if conn && namedByConnection(fields, hf.Name) {
			continue
		}
		dst = append(dst, hf)
	}
	return dst
}

// namedByConnection tells whether a connection field among fields names
// name (never the framing: header.ConnectionMayName).
func namedByConnection(fields []hpack.HeaderField, name string) bool {
	if !header.ConnectionMayName(name) {
		return false
	}
	for _, hf := range fields {
		if isConnection(hf.Name) && header.ListsToken(hf.Value, name) {
			return true
		}
	}
	return false
}

func isConnection(name string) bool { return len(name) == 10 && strings.EqualFold(name, "connection") }

// keyRequest lets key rules read a relayed request's head.
type keyRequest struct {
	fields      []hpack.HeaderField
	path, query []byte
	body        []byte // nil until buffered (see stream.buffer)
}

var _ keys.Request = keyRequest{}

// HeaderValues implements keys.Request. The values point into the decoded
// strings, which the rules only read.
func (r keyRequest) HeaderValues(dst [][]byte, name string) [][]byte {
	for _, hf := range r.fields {
		if len(hf.Name) == len(name) && strings.EqualFold(hf.Name, name) {
			dst = append(dst, unsafe.Slice(unsafe.StringData(hf.Value), len(hf.Value)))
		}
	}
	return dst
}

// PathQuery implements keys.Request.
func (r keyRequest) PathQuery() (path, query []byte) { return r.path, r.query }

// Body implements keys.Request.
func (r keyRequest) Body() []byte { return r.body }
