// Package header is the header policy, one for every front end (HTTP/1.1,
// the HTTP/2 relay) and for broadcast: which request and
// response fields pass, which are one hop's only, and what the proxy adds
// (X-Forwarded-*, X-Shard, X-Shard-Previous). Each front end writes fields
// in its own representation (bytes, HPACK, http.Header) but asks Classify
// what to do with each one, so the policy is decided here alone.
package header

import (
	"bytes"
	"net"
	"net/http"
)

// Headers the proxy sets.
const (
	// Shard names the shard that owns a request, on every answer.
	Shard = "X-Shard"
	// Previous and PreviousAddress name, on a request whose key
	// moved in a reshard, the shard that owned it before (and its address),
	// so the new owner can read through while data moves. A client's own
	// values are always dropped.
	Previous        = "X-Shard-Previous"
	PreviousAddress = "X-Shard-Previous-Address"
)

// The header policy, one for every front end and for broadcast:
//
//   - Hop-by-hop fields (RFC 9110 §7.6.1) are dropped in both directions,
//     interim (1xx) answers included: Connection, and every field it names
//     (but Host, Content-Length and Transfer-Encoding, see
//     ConnectionMayName); Proxy-Connection, Keep-Alive, TE,
//     Transfer-Encoding and Upgrade; and Proxy-Authenticate and
//     Proxy-Authorization, which are addressed to the proxy. Names match
//     case-insensitively. Trailer is end-to-end in RFC 9110 and is kept, so
//     trailers still have their announcement. Framing (Transfer-Encoding,
//     Content-Length) is the engine's business: an HTTP/1.1 engine that
//     relays a chunked body as it is keeps its Transfer-Encoding.
//   - An HTTP/2 client cannot send a connection-specific field (RFC 9113
//     §8.2.2): its stream is refused, never stripped and forwarded. The
//     one TE it may send, "te: trailers", is forwarded: gRPC needs it end
//     to end. From an HTTP/1.1 client TE is a connection option (RFC 9110
//     §10.1.4) and is dropped like the others.
//   - X-Forwarded-For: every value, in order, is gathered into one field,
//     empty ones skipped, with the client's address appended.
//     X-Forwarded-Proto and X-Forwarded-Host are added only when no such
//     field is present (empty or not): an edge proxy in front knows the
//     original scheme and host better than we do.
//   - A client's X-Shard-Previous* are dropped; a shard's X-Shard is
//     replaced by the proxy's, on every answer.
//   - Nothing else is added: a net/http transport's User-Agent, or a
//     net/http server's Date and sniffed Content-Type, are kept out.
//
// Classify names the class of each field; the fixed hop-by-hop list is
// h1.HopByHopFields, the one the HTTP/1.1 parser flags: every front end and
// broadcast strip the same fields.

// ConnectionTokens calls fn for each token a Connection value lists, except
// "close" and "keep-alive", which name no field.
func ConnectionTokens(value []byte, fn func(token []byte)) {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = value[:i], value[i+1:]
		} else {
			tok, value = value, nil
		}
		tok = bytes.Trim(tok, " \t")
		if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) {
			continue
		}
		fn(tok)
	}
}

// Forwarded is what a front end knows about a request's origin.
type Forwarded struct {
	// ClientIP is the address of the peer that sent the request.
	ClientIP string
	// TLS tells whether that peer spoke TLS to us.
	TLS bool
	// Host is the request's Host (or :authority), "" if none.
	Host string
}

// Proto is the X-Forwarded-Proto value for f.
func (f Forwarded) Proto() string {
	if f.TLS {
		return "https"
	}
	return "http"
}

// Prepare applies the header policy to a request header of net/http
// (broadcast, the HTTP/1.1-to-h2c bridge): it drops
// hop-by-hop fields and a client's X-Shard-Previous*, and adds
// X-Forwarded-*. Each field is decided by Classify, as the front ends that
// write heads themselves do.
func Prepare(h http.Header, f Forwarded) {
	StripHopByHop(h)
	var xff []string
	proto, host := false, false
	for name, values := range h {
		switch Classify(name) {
		case PreviousOwner:
			delete(h, name)
		case ForwardedFor:
			xff = append(xff, values...)
			delete(h, name)
		case ForwardedProto:
			proto = true
		case ForwardedHost:
			host = true
		}
	}
	if v := forwardedFor(xff, f.ClientIP); v != "" {
		h.Set("X-Forwarded-For", v)
	}
	if !proto {
		h.Set("X-Forwarded-Proto", f.Proto())
	}
	if !host && f.Host != "" {
		h.Set("X-Forwarded-Host", f.Host)
	}
	// Go's transports send "User-Agent: Go-http-client/..." when a request
	// has none; a nil value keeps it out, so the shard gets what the
	// client sent.
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil
	}
}

// forwardedFor is the X-Forwarded-For value for the values a request had
// (net/http keeps them in order) and the client's address.
func forwardedFor(prior []string, ip string) string {
	v := ""
	for _, p := range prior {
		v = JoinComma(v, p)
	}
	return JoinComma(v, ip)
}

// PrepareAnswer applies the header policy to an answer's header (final or
// interim) that comes from a net/http transport: hop-by-hop fields
// dropped, and X-Shard set to shard, replacing the shard's own.
func PrepareAnswer(h http.Header, shard string) {
	StripHopByHop(h)
	for name := range h {
		if Classify(name) == ShardName {
			delete(h, name)
		}
	}
	h.Set(Shard, shard)
}

// StripHopByHop drops the hop-by-hop fields of a net/http header: those
// that Connection names, then those Classify calls HopByHop.
func StripHopByHop(h http.Header) {
	for name, values := range h {
		if Classify(name) != HopByHop {
			continue
		}
		if fold(name, "Connection") {
			for _, v := range values {
				ConnectionTokens([]byte(v), func(tok []byte) {
					if ConnectionMayName(tok) {
						h.Del(string(tok))
					}
				})
			}
		}
		delete(h, name)
	}
}

// ClientIP is the host part of a net.Addr or "host:port" string.
func ClientIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
