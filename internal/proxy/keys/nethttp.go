package keys

import (
	"net/http"
	"net/textproto"
	"strings"
)

// HTTPRequest lets key rules read a net/http request (the net/http front
// end, the demo shards). Buffered is the buffered body, if any.
type HTTPRequest struct {
	Req      *http.Request
	Buffered []byte
}

var _ Request = HTTPRequest{}

// HeaderValues implements Request.
// net/http moves Host out of the header map: it is read from Req.Host.
func (h HTTPRequest) HeaderValues(dst [][]byte, name string) [][]byte {
	if strings.EqualFold(name, "Host") {
		if h.Req.Host != "" {
			dst = append(dst, []byte(h.Req.Host))
		}
		return dst
	}
	for _, v := range h.Req.Header[textproto.CanonicalMIMEHeaderKey(name)] {
		dst = append(dst, []byte(v))
	}
	return dst
}

// PathQuery implements Request.
func (h HTTPRequest) PathQuery() (path, query []byte) {
	return []byte(h.Req.URL.EscapedPath()), []byte(h.Req.URL.RawQuery)
}

// Body implements Request.
func (h HTTPRequest) Body() []byte { return h.Buffered }
