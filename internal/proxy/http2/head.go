package http2

import (
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// requestHead is what the relay reads of a request head.
type requestHead struct {
	method      string
	path, query []byte
	length      int64 // content-length, -1 if none
	grpc        bool
	te          bool          // "te: trailers"
	timeout     time.Duration // grpc-timeout, 0 if none
}

// errMalformed is a request RFC 9113 §8.1.1 calls malformed: the stream
// is reset with PROTOCOL_ERROR.
var errMalformed = errors.New("malformed HTTP/2 request")

// parseRequest checks a request head (RFC 9113 §8.2, §8.3); the Framer
// has checked field names and values and the pseudo-fields' order.
func parseRequest(f *block) (requestHead, error) {
	rq := requestHead{length: -1}
	var scheme, path, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			rq.method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :status, :protocol (no extended CONNECT here)
			return rq, errMalformed
		}
	}
	for _, hf := range f.RegularFields() {
		if n := len(hf.Value); n > 0 && (isWhite(hf.Value[0]) || isWhite(hf.Value[n-1])) {
			return rq, errMalformed // §8.2.1: servers differ on whether to trim it
		}
		switch hf.Name {
		case "host":
			// §8.3.1: a Host naming another entity than :authority; the
			// shard could route by either.
			if authority != "" && !strings.EqualFold(hf.Value, authority) {
				return rq, errMalformed
			}
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return rq, errMalformed
		case "te":
			if hf.Value != "trailers" {
				return rq, errMalformed
			}
			rq.te = true
		case "content-length":
			n, ok := parseLength(hf.Value)
			if !ok || rq.length >= 0 && rq.length != n {
				return rq, errMalformed
			}
			rq.length = n
		case "content-type":
			rq.grpc = header.IsGRPCType(hf.Value)
		case "grpc-timeout":
			rq.timeout, _ = header.ParseGRPCTimeout(hf.Value)
		}
	}
	if rq.method == "CONNECT" {
		return rq, answer.ErrMethodNotAllowed
	}
	if !isToken(rq.method) || scheme == "" || !validPath(path, rq.method) {
		return rq, errMalformed
	}
	p := unsafe.Slice(unsafe.StringData(path), len(path))
	if i := strings.IndexByte(path, '?'); i >= 0 {
		rq.path, rq.query = p[:i], p[i+1:]
	} else {
		rq.path = p
	}
	return rq, nil
}

// parseLength parses a content-length: digits only (no sign, no space:
// strconv would take "+5"), at most 18 of them.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// validPath: an origin-form target (RFC 9112 §3.2.1, as RFC 9113 §8.3.1
// asks), or "*" for OPTIONS; only visible ASCII, so that no space or
// control byte can change how an HTTP/1.1 hop reads it.
func validPath(p, method string) bool {
	if p == "*" {
		return method == "OPTIONS"
	}
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isToken tells an RFC 9110 token (a method).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

func isWhite(c byte) bool { return c == ' ' || c == '\t' }

// outboundHead is the request head as the shard gets it: the
// pseudo-fields and fields as received, under the header policy (package
// header): no hop-by-hop field, X-Forwarded-*, a client's own
// X-Shard-Previous* dropped.
func (c *clientConn) outboundHead(out []hpack.HeaderField, f *block, rq requestHead) []hpack.HeaderField {
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
	if rq.te {
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

// Body implements keys.Request: relayed requests are routed on their head.
func (r keyRequest) Body() []byte { return nil }
