package h2hpack

import (
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"golang.org/x/net/http/httpguts"
)

// Request is what the relay reads of a request head.
type Request struct {
	Method      string
	Path, Query []byte
	Length      int64 // content-length, -1 if none
	GRPC        bool
	TE          bool          // "te: trailers"
	Timeout     time.Duration // grpc-timeout, 0 if none
}

// ErrMalformed is a request RFC 9113 §8.1.1 calls malformed: the stream
// is reset with PROTOCOL_ERROR.
var ErrMalformed = errors.New("malformed HTTP/2 request")

// ParseRequest checks a request head (RFC 9113 §8.2, §8.3) beyond what
// Block checked as it decoded: pseudo-fields present and well-formed, no
// connection-specific field, a plain content-length, a host that names
// the :authority, no value with surrounding white space.
func ParseRequest(f *Block) (Request, error) {
	rq := Request{Length: -1}
	var scheme, path, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			rq.Method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :status, :protocol (no extended CONNECT here)
			return rq, ErrMalformed
		}
	}
	for _, hf := range f.RegularFields() {
		if n := len(hf.Value); n > 0 && (isWhite(hf.Value[0]) || isWhite(hf.Value[n-1])) {
			return rq, ErrMalformed // §8.2.1: servers differ on whether to trim it
		}
		switch hf.Name {
		case "host":
			// §8.3.1: a Host naming another entity than :authority; the
			// shard could route by either.
			if authority != "" && !strings.EqualFold(hf.Value, authority) {
				return rq, ErrMalformed
			}
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return rq, ErrMalformed
		case "te":
			if hf.Value != "trailers" {
				return rq, ErrMalformed
			}
			rq.TE = true
		case "content-length":
			n, ok := parseLength(hf.Value)
			if !ok || rq.Length >= 0 && rq.Length != n {
				return rq, ErrMalformed
			}
			rq.Length = n
		case "content-type":
			rq.GRPC = header.IsGRPCType(hf.Value)
		case "grpc-timeout":
			rq.Timeout, _ = header.ParseGRPCTimeout(hf.Value)
		}
	}
	if rq.Method == "CONNECT" {
		return rq, answer.ErrMethodNotAllowed
	}
	if !isToken(rq.Method) || scheme == "" || !validPath(path, rq.Method) {
		return rq, ErrMalformed
	}
	p := unsafe.Slice(unsafe.StringData(path), len(path))
	if i := strings.IndexByte(path, '?'); i >= 0 {
		rq.Path, rq.Query = p[:i], p[i+1:]
	} else {
		rq.Path = p
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
