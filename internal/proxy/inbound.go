package proxy

import (
	"bytes"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
)

// inbound is one HTTP/1.1 request as the engine holds it: its parsed head,
// aliasing the connection's read buffer, and the body when a body rule made
// the engine buffer it. Key rules read it through KeyRequest.
type inbound struct {
	head h1.Request
	body []byte
}

var _ KeyRequest = (*inbound)(nil)

// HeaderValues implements KeyRequest.
func (in *inbound) HeaderValues(dst [][]byte, name string) [][]byte {
	for i := range in.head.Fields {
		if f := &in.head.Fields[i]; h1.EqualFold(f.Name, name) {
			dst = append(dst, f.Value)
		}
	}
	return dst
}

// PathQuery implements KeyRequest. An absolute-form target's path starts
// after its authority; "*" and authority-form have no path.
func (in *inbound) PathQuery() (path, query []byte) {
	t := in.head.Target
	switch in.head.Form {
	case h1.FormAbsolute:
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			j := bytes.IndexAny(t, "/?")
			if j < 0 {
				return []byte("/"), nil
			}
			t = t[j:]
		}
	case h1.FormOrigin:
	default:
		return nil, nil
	}
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		return t[:i], t[i+1:]
	}
	return t, nil
}

// Body implements KeyRequest.
func (in *inbound) Body() []byte { return in.body }
