package http1

import (
	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
)

// inbound is one HTTP/1.1 request as the engine holds it: its parsed head,
// aliasing the connection's read buffer, and the body when a body rule made
// the engine buffer it. Key rules read it as a keys.Request.
type inbound struct {
	head h1.Request
	body []byte // the payload, when buffered for a body rule
	// raw is the body as received (chunk framing included), once it was
	// buffered or found whole in the read buffer; nil while it streams.
	raw []byte
	// continued: the engine answered 100 Continue itself (Expect is then
	// not forwarded).
	continued bool
	// headBuf holds a copy of the head when the read buffer had to be
	// reused for the body (a body rule); from the pool, for one request.
	headBuf *[]byte
}

var _ keys.Request = (*inbound)(nil)

// HeaderValues implements keys.Request.
func (in *inbound) HeaderValues(dst [][]byte, name string) [][]byte { return in.head.Values(dst, name) }

// PathQuery implements keys.Request.
func (in *inbound) PathQuery() (path, query []byte) { return in.head.PathQuery() }

// Body implements keys.Request.
func (in *inbound) Body() []byte { return in.body }
