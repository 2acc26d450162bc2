package h1

// Flags records what a parsed head declared about framing and about the
// connection, so that the engine decides without looking at fields again.
type Flags uint16

const (
	// FlagContentLength: a valid Content-Length was present; the value is
	// in ContentLength.
	FlagContentLength Flags = 1 << iota
	// FlagContentLengthRepeated: the Content-Length value was given more
	// than once (several fields, or a list such as "42, 42"). The values
	// were identical, but a proxy should forward one canonical
	// "Content-Length: n" line instead of the raw ones, because recipients
	// disagree on such lists (Go's net/http rejects "42, 42").
	FlagContentLengthRepeated
	// FlagTransferEncoding: a Transfer-Encoding field was present.
	FlagTransferEncoding
	// FlagChunked: chunked is the final transfer coding (for a request, the
	// only one).
	FlagChunked
	// FlagConnClose: a Connection field lists "close" (any case).
	FlagConnClose
	// FlagConnKeepAlive: a Connection field lists "keep-alive" (any case).
	FlagConnKeepAlive
	// FlagConnOther: a Connection field lists some other token, which names
	// a field that is hop-by-hop in this message (see Head.HopByHop).
	FlagConnOther
	// FlagUpgrade: an Upgrade field was present.
	FlagUpgrade
	// FlagExpectContinue: Expect is "100-continue" (any case).
	FlagExpectContinue
	// FlagHopByHop: a field that a proxy must strip before forwarding was
	// present: Connection, Keep-Alive, Proxy-Connection, TE, Upgrade,
	// Proxy-Authenticate or Proxy-Authorization. When it is clear, the only
	// hop-by-hop field a head can hold is Transfer-Encoding, which
	// FlagTransferEncoding reports: a proxy relaying a chunked body verbatim
	// may forward that line as is (requests carry nothing but "chunked"),
	// and one decoding the body drops it. Without FlagHopByHop and
	// FlagTransferEncoding every field line can be forwarded verbatim.
	FlagHopByHop
)

// Has reports whether every flag in x is set in f.
func (f Flags) Has(x Flags) bool { return f&x == x }

// Framing says how a message body is delimited (RFC 9112 §6.3).
type Framing uint8

const (
	// FramingNone: no body; the next message starts right after the head.
	FramingNone Framing = iota
	// FramingLength: exactly ContentLength bytes follow (possibly zero).
	FramingLength
	// FramingChunked: the chunked coding follows; read it with Chunked.
	FramingChunked
	// FramingClose: the body runs until the server closes the connection
	// (responses only); the connection cannot be reused.
	FramingClose
	// FramingTunnel: after this head the connection carries another
	// protocol (2xx to CONNECT, 101 Switching Protocols) until either side
	// closes.
	FramingTunnel
)

var framingNames = [...]string{"none", "length", "chunked", "close", "tunnel"}

// String returns the lower-case name of f, for logs.
func (f Framing) String() string {
	if int(f) < len(framingNames) {
		return framingNames[f]
	}
	return "Framing(?)"
}

// Form is the form of a request-target (RFC 9112 §3.2).
type Form uint8

const (
	// FormOrigin: absolute-path [ "?" query ], as in "GET /a?b".
	FormOrigin Form = iota
	// FormAbsolute: scheme "://" authority path-abempty [ "?" query ].
	FormAbsolute
	// FormAuthority: uri-host ":" port, only with CONNECT.
	FormAuthority
	// FormAsterisk: "*", only with OPTIONS.
	FormAsterisk
)

var formNames = [...]string{"origin", "absolute", "authority", "asterisk"}

// String returns the lower-case name of f, for logs.
func (f Form) String() string {
	if int(f) < len(formNames) {
		return formNames[f]
	}
	return "Form(?)"
}
