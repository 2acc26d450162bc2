package proxy

import (
	"net/http"
	"net/textproto"
)

// HTTPKeyRequest lets key rules read a net/http request (the HTTP/2 front
// end, the demo shards). Body is the buffered body, if any.
type HTTPKeyRequest struct {
	Req      *http.Request
	Buffered []byte
}

var _ KeyRequest = HTTPKeyRequest{}

// HeaderValues implements KeyRequest.
func (h HTTPKeyRequest) HeaderValues(dst [][]byte, name string) [][]byte {
	for _, v := range h.Req.Header[textproto.CanonicalMIMEHeaderKey(name)] {
		dst = append(dst, []byte(v))
	}
	return dst
}

// PathQuery implements KeyRequest.
func (h HTTPKeyRequest) PathQuery() (path, query []byte) {
	return []byte(h.Req.URL.EscapedPath()), []byte(h.Req.URL.RawQuery)
}

// Body implements KeyRequest.
func (h HTTPKeyRequest) Body() []byte { return h.Buffered }
