package keys

import (
	"net/http"
	"net/textproto"
)

// HTTPRequest lets key rules read a net/http request (the net/http front
// end, the demo shards). Buffered is the buffered body, if any.
type HTTPRequest struct {
	Req      *http.Request
	Buffered []byte
}

var _ Request = HTTPRequest{}

// HeaderValues implements Request.
func (h HTTPRequest) HeaderValues(dst [][]byte, name string) [][]byte {
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
