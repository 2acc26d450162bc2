// Package header is the header policy, one for every front end (HTTP/1.1,
// the HTTP/2 relay, the net/http path) and for broadcast: which request and
// response fields pass, which are one hop's only, and what the proxy adds
// (X-Forwarded-*, X-Shard, X-Shard-Previous). Each front end writes fields
// in its own representation (bytes, HPACK, http.Header) but asks Classify
// what to do with each one, so the policy is decided here alone.
package header

import (
	"bytes"
	"net"
	"net/http"
	"strings"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
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
//   - Hop-by-hop fields (RFC 9110 §7.6.1) are dropped in both directions:
//     Connection, and every field it names; Proxy-Connection, Keep-Alive,
//     TE, Transfer-Encoding and Upgrade; and Proxy-Authenticate and
//     Proxy-Authorization, which are addressed to the proxy. Names match
//     case-insensitively. Trailer is end-to-end in RFC 9110 and is kept, so
//     trailers still have their announcement. Framing (Transfer-Encoding,
//     Content-Length) is the engine's business: an HTTP/1.1 engine that
//     relays a chunked body as it is keeps its Transfer-Encoding.
//   - X-Forwarded-For gets the client's address appended. X-Forwarded-Proto
//     and X-Forwarded-Host are set only when absent: an edge proxy in front
//     knows the original scheme and host better than we do.
//
// The fixed list is h1.HopByHopFields, the one the HTTP/1.1 parser flags:
// both front ends and broadcast strip the same fields.

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
// (broadcast, the net/http path): it drops hop-by-hop fields and a client's
// X-Shard-Previous*, and adds X-Forwarded-*.
func Prepare(h http.Header, f Forwarded) {
	StripHopByHop(h)
	h.Del(Previous)
	h.Del(PreviousAddress)
	if f.ClientIP != "" {
		if prior := strings.Join(h.Values("X-Forwarded-For"), ", "); prior != "" {
			h.Set("X-Forwarded-For", prior+", "+f.ClientIP)
		} else {
			h.Set("X-Forwarded-For", f.ClientIP)
		}
	}
	if h.Get("X-Forwarded-Proto") == "" {
		h.Set("X-Forwarded-Proto", f.Proto())
	}
	if h.Get("X-Forwarded-Host") == "" && f.Host != "" {
		h.Set("X-Forwarded-Host", f.Host)
	}
}

// StripHopByHop drops the hop-by-hop fields of a net/http header: those
// that Connection names, then the fixed list.
func StripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		ConnectionTokens([]byte(v), func(tok []byte) { h.Del(string(tok)) })
	}
	for _, name := range h1.HopByHopFields {
		h.Del(name)
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
