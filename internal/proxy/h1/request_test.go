package h1

import (
	"errors"
	"strings"
	"testing"
)

// reqCase is one request head. Accepted cases list what Parse must report;
// rejected ones the error.
type reqCase struct {
	name    string
	in      string
	err     error  // nil: accepted
	method  string // accepted only, as are the fields below
	target  string
	minor   int
	host    *string
	cl      int64
	flags   Flags
	form    Form
	framing Framing
	fields  int
}

func str(s string) *string { return &s }

const get11 = "GET / HTTP/1.1\r\nHost: a\r\n"

var acceptedRequests = []reqCase{
	{name: "simple", in: get11 + "\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "lower-case method is a token", in: "get / HTTP/1.1\r\nHost: a\r\n\r\n", method: "get", target: "/", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "extension method", in: "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n", method: "M-SEARCH", target: "/x", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "host name case", in: "GET / HTTP/1.1\r\nhOsT:   a.example:8080  \r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a.example:8080"), cl: -1, fields: 1},
	{name: "empty host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n", method: "GET", target: "/", minor: 1, host: str(""), cl: -1, fields: 1},
	{name: "ipv6 host", in: "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("[2001:db8::1]:80"), cl: -1, fields: 1},
	{name: "http/1.0 without host", in: "GET /a HTTP/1.0\r\nUser-Agent: x\r\n\r\n", method: "GET", target: "/a", minor: 0, cl: -1, fields: 1},
	{name: "http/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", method: "GET", target: "/", cl: -1, fields: 1,
		flags: FlagConnKeepAlive | FlagHopByHop},
	{name: "content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nCONTENT-length: 5\r\n\r\n", method: "POST", target: "/", minor: 1, host: str("a"), cl: 5,
		flags: FlagContentLength, framing: FramingLength, fields: 2},
	{name: "content-length zero, leading zeros", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n", method: "POST", target: "/", minor: 1, host: str("a"), cl: 0,
		flags: FlagContentLength, framing: FramingLength, fields: 2},
	{name: "content-length max", in: get11 + "Content-Length: 9223372036854775807\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: 1<<63 - 1,
		flags: FlagContentLength, framing: FramingLength, fields: 2},
	{name: "identical content-lengths", in: get11 + "Content-Length: 7\r\nContent-Length: 7\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: 7,
		flags: FlagContentLength | FlagContentLengthRepeated, framing: FramingLength, fields: 3},
	{name: "content-length list", in: get11 + "Content-Length: 7 ,7,\t7\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: 7,
		flags: FlagContentLength | FlagContentLengthRepeated, framing: FramingLength, fields: 2},
	{name: "chunked any case", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n", method: "POST", target: "/", minor: 1, host: str("a"), cl: -1,
		flags: FlagTransferEncoding | FlagChunked, framing: FramingChunked, fields: 2},
	{name: "connection tokens any case", in: get11 + "Connection: CLOSE, keep-ALIVE,, X-Foo\r\nX-Foo: 1\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1,
		flags: FlagConnClose | FlagConnKeepAlive | FlagConnOther | FlagHopByHop, fields: 3},
	{name: "upgrade", in: get11 + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1,
		flags: FlagConnOther | FlagUpgrade | FlagHopByHop, fields: 3},
	{name: "expect 100-continue", in: "PUT /k HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", target: "/k", minor: 1, host: str("a"), cl: 1,
		flags: FlagExpectContinue | FlagContentLength, framing: FramingLength, fields: 3},
	{name: "other expectation", in: get11 + "Expect: 100-continue, x\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 2},
	{name: "static hop-by-hop", in: get11 + "TE: trailers\r\nKeep-Alive: 5\r\nProxy-Authorization: x\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1,
		flags: FlagHopByHop, fields: 4},
	{name: "trailer field", in: get11 + "Trailer: X-Sum, Expires\r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 2},
	{name: "values: obs-text, htab, empty", in: get11 + "X-A: caf\xc3\xa9\tau lait \t\r\nX-B:\r\nX-C: \t \r\n\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 4},
	{name: "absolute-form", in: "GET http://a/x?y=%zz HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", target: "http://a/x?y=%zz", minor: 1, host: str("a"), cl: -1, form: FormAbsolute, fields: 1},
	{name: "absolute-form without path, host case", in: "GET HTTPS://Example.COM:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", method: "GET", target: "HTTPS://Example.COM:443",
		minor: 1, host: str("example.com:443"), cl: -1, form: FormAbsolute, fields: 1},
	{name: "absolute-form ipv6", in: "GET http://[::ffff:10.0.0.1]:8080?q HTTP/1.0\r\n\r\n", method: "GET", target: "http://[::ffff:10.0.0.1]:8080?q", cl: -1, form: FormAbsolute},
	{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", target: "*", minor: 1, host: str("a"), cl: -1, form: FormAsterisk, fields: 1},
	{name: "options origin-form", in: "OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", target: "/x", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "connect", in: "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n", method: "CONNECT", target: "a.example:443", minor: 1, host: str("a.example"), cl: 0,
		flags: FlagContentLength, form: FormAuthority, framing: FramingLength, fields: 2},
	{name: "one leading empty line", in: "\r\n" + get11 + "\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "four leading empty lines", in: strings.Repeat("\r\n", 4) + get11 + "\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "percent-encoded path", in: "GET /a%2Fb%c3%A9?x=100% HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", target: "/a%2Fb%c3%A9?x=100%", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "unusual but valid path bytes", in: "GET //a/{b}|c\"^`\\ HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", target: "//a/{b}|c\"^`\\", minor: 1, host: str("a"), cl: -1, fields: 1},
	{name: "max fields", in: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", MaxFields-1) + "\r\n", method: "GET", target: "/", minor: 1, host: str("a"), cl: -1, fields: MaxFields},
}

var rejectedRequests = []reqCase{
	// Request line.
	{name: "method with paren", in: "G(T / HTTP/1.1\r\n", err: errMethod},
	{name: "leading space", in: " GET / HTTP/1.1\r\n", err: errMethod},
	{name: "tab after method", in: "GET\t/ HTTP/1.1\r\n", err: errMethod},
	{name: "two spaces after method", in: "GET  / HTTP/1.1\r\n", err: errEmptyTarget},
	{name: "two spaces after target", in: "GET /  HTTP/1.1\r\n", err: errVersionSyntax},
	{name: "space in target", in: "GET /a b HTTP/1.1\r\n", err: errVersionSyntax},
	{name: "tab in target", in: "GET /a\tb HTTP/1.1\r\n", err: errTargetByte},
	{name: "DEL in target", in: "GET /a\x7f HTTP/1.1\r\n", err: errTargetByte},
	{name: "NUL in target", in: "GET /a\x00 HTTP/1.1\r\n", err: errTargetByte},
	{name: "non-ASCII target", in: "GET /caf\xc3\xa9 HTTP/1.1\r\n", err: errTargetByte},
	{name: "HTTP/0.9 request", in: "GET /\r\n\r\n", err: errTargetByte},
	{name: "fragment", in: "GET /a#b HTTP/1.1\r\n", err: errFragment},
	{name: "bad escape", in: "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", err: errPercent},
	{name: "truncated escape", in: "GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", err: errPercent},
	{name: "asterisk with GET", in: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", err: errAsterisk},
	{name: "asterisk prefix", in: "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", err: errTarget},
	{name: "authority-form with GET", in: "GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", err: errTarget},
	{name: "no authority", in: "GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n", err: errTarget},
	{name: "urn", in: "GET urn:a:b HTTP/1.1\r\nHost: a\r\n\r\n", err: errTarget},
	{name: "scheme starts with digit", in: "GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTarget},
	{name: "userinfo", in: "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errUserinfo},
	{name: "empty host in absolute-form", in: "GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "pct-encoded host in absolute-form", in: "GET http://%61/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "unclosed ipv6", in: "GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "ipv4 in brackets", in: "GET http://[1.2.3.4]/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "ipv6 zone", in: "GET http://[fe80::1%25en0]/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "bad port", in: "GET http://a:8x/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errTargetHost},
	{name: "CONNECT origin-form", in: "CONNECT /rpc HTTP/1.1\r\nHost: a\r\n\r\n", err: errConnectTarget},
	{name: "CONNECT without port", in: "CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", err: errConnectTarget},
	{name: "CONNECT empty port", in: "CONNECT a.example: HTTP/1.1\r\nHost: a\r\n\r\n", err: errConnectTarget},
	{name: "CONNECT absolute-form", in: "CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errConnectTarget},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", err: ErrVersion},
	{name: "HTTP/2.0", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", err: ErrVersion},
	{name: "HTTP/0.9 version", in: "GET / HTTP/0.9\r\n\r\n", err: ErrVersion},
	{name: "HTTP/1.10", in: "GET / HTTP/1.10\r\n", err: errVersionSyntax},
	{name: "lower-case version", in: "GET / http/1.1\r\n", err: errVersionSyntax},
	{name: "HTTP/1", in: "GET / HTTP/1\r\n", err: errVersionSyntax},
	{name: "space after version", in: "GET / HTTP/1.1 \r\n", err: errVersionSyntax},
	// Line endings.
	{name: "bare LF after request line", in: "GET / HTTP/1.1\nHost: a\r\n\r\n", err: errBareLF},
	{name: "bare CR after request line", in: "GET / HTTP/1.1\rHost: a\r\n\r\n", err: errBareCR},
	{name: "bare LF after field", in: get11 + "X: y\n\r\n", err: errBareLF},
	{name: "bare LF ends head", in: get11 + "\n", err: errBareLF},
	{name: "bare CR ends head", in: get11 + "\rX", err: errBareCR},
	{name: "CR inside value", in: get11 + "X: a\rb\r\n\r\n", err: errBareCR},
	{name: "CR CR LF", in: get11 + "X: a\r\r\n\r\n", err: errBareCR},
	{name: "leading bare LF", in: "\nGET / HTTP/1.1\r\n", err: errBareLF},
	{name: "leading bare CR", in: "\rGET / HTTP/1.1\r\n", err: errBareCR},
	{name: "five leading empty lines", in: strings.Repeat("\r\n", 5) + get11 + "\r\n", err: errEmptyLines},
	// Field lines.
	{name: "whitespace before first field", in: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", err: errLeadingWS},
	{name: "obs-fold", in: get11 + "X: a\r\n b\r\n\r\n", err: errObsFold},
	{name: "obs-fold with tab", in: get11 + "X: a\r\n\tb\r\n\r\n", err: errObsFold},
	{name: "empty name", in: get11 + ": a\r\n\r\n", err: errEmptyName},
	{name: "space before colon", in: get11 + "X : a\r\n\r\n", err: errSpaceBeforeColon},
	{name: "tab before colon", in: get11 + "Content-Length\t: 5\r\n\r\n", err: errSpaceBeforeColon},
	{name: "no colon", in: get11 + "X\r\n\r\n", err: errNoColon},
	{name: "invalid name byte", in: get11 + "X(y): a\r\n\r\n", err: errFieldNameByte},
	{name: "non-ASCII name", in: get11 + "X\xc3\xa9: a\r\n\r\n", err: errFieldNameByte},
	{name: "NUL in value", in: get11 + "X: a\x00b\r\n\r\n", err: errFieldValueByte},
	{name: "DEL in value", in: get11 + "X: a\x7f\r\n\r\n", err: errFieldValueByte},
	{name: "CTL in value", in: get11 + "X: \x01\r\n\r\n", err: errFieldValueByte},
	{name: "too many fields", in: get11 + strings.Repeat("X: y\r\n", MaxFields) + "\r\n", err: ErrTooManyFields},
	// Content-Length.
	{name: "negative content-length", in: get11 + "Content-Length: -1\r\n\r\n", err: errCLInvalid},
	{name: "signed content-length", in: get11 + "Content-Length: +1\r\n\r\n", err: errCLInvalid},
	{name: "space inside content-length", in: get11 + "Content-Length: 1 2\r\n\r\n", err: errCLInvalid},
	{name: "empty content-length", in: get11 + "Content-Length:\r\n\r\n", err: errCLInvalid},
	{name: "hex content-length", in: get11 + "Content-Length: 0x10\r\n\r\n", err: errCLInvalid},
	{name: "content-length trailing comma", in: get11 + "Content-Length: 1,\r\n\r\n", err: errCLInvalid},
	{name: "content-length empty element", in: get11 + "Content-Length: 1,,1\r\n\r\n", err: errCLInvalid},
	{name: "content-length list differs", in: get11 + "Content-Length: 5, 6\r\n\r\n", err: errCLConflict},
	{name: "content-lengths differ", in: get11 + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", err: errCLConflict},
	{name: "content-lengths differ in zeros", in: get11 + "Content-Length: 5\r\nContent-Length: 05\r\n\r\n", err: errCLConflict},
	{name: "content-length overflow", in: get11 + "Content-Length: 9223372036854775808\r\n\r\n", err: errCLOverflow},
	{name: "content-length huge", in: get11 + "Content-Length: 99999999999999999999999\r\n\r\n", err: errCLOverflow},
	// Transfer-Encoding.
	{name: "identity", in: get11 + "Transfer-Encoding: identity\r\n\r\n", err: errTEUnsupported},
	{name: "gzip, chunked", in: get11 + "Transfer-Encoding: gzip, chunked\r\n\r\n", err: errTEUnsupported},
	{name: "chunked, gzip", in: get11 + "Transfer-Encoding: chunked, gzip\r\n\r\n", err: errChunkedNotFinal},
	{name: "chunked twice", in: get11 + "Transfer-Encoding: chunked, chunked\r\n\r\n", err: errChunkedTwice},
	{name: "chunked in two fields", in: get11 + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: errChunkedTwice},
	{name: "empty transfer-encoding", in: get11 + "Transfer-Encoding:\r\n\r\n", err: errTEInvalid},
	{name: "chunked with parameter", in: get11 + "Transfer-Encoding: chunked;q=1\r\n\r\n", err: errTEInvalid},
	{name: "chunked trailing comma", in: get11 + "Transfer-Encoding: chunked,\r\n\r\n", err: errTEInvalid},
	{name: "chunked leading comma", in: get11 + "Transfer-Encoding: , chunked\r\n\r\n", err: errTEInvalid},
	{name: "chunked quoted", in: get11 + "Transfer-Encoding: \"chunked\"\r\n\r\n", err: errTEInvalid},
	{name: "transfer-encoding in HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err: errTE10},
	{name: "content-length then transfer-encoding", in: get11 + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: errCLWithTE},
	{name: "transfer-encoding then content-length", in: get11 + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err: errCLWithTE},
	{name: "trailer announces content-length", in: get11 + "Trailer: x, content-length\r\n\r\n", err: errTrailerFraming},
	// Host.
	{name: "missing host", in: "GET / HTTP/1.1\r\nX: y\r\n\r\n", err: errNoHost},
	{name: "duplicate identical host", in: get11 + "Host: a\r\n\r\n", err: errDuplicateHost},
	{name: "host with space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", err: errHost},
	{name: "host with userinfo", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", err: errHost},
	{name: "host with path", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", err: errHost},
	{name: "host with bad port", in: "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", err: errHost},
	{name: "host pct-encoded", in: "GET / HTTP/1.1\r\nHost: %61\r\n\r\n", err: errHost},
	{name: "host bad ipv6", in: "GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n", err: errHost},
	{name: "host differs from authority", in: "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", err: errHostMismatch},
	{name: "CONNECT with content-length", in: "CONNECT a:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", err: errConnectContent},
	{name: "CONNECT chunked", in: "CONNECT a:1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", err: errConnectContent},
	{name: "CONNECT without host", in: "CONNECT a:1 HTTP/1.1\r\n\r\n", err: errNoHost},
}

func TestRequestAccepted(t *testing.T) {
	for _, tc := range acceptedRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, err := r.Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: got error %v, want nil", err)
			}
			if n != len(tc.in) {
				t.Errorf("n: got %d, want %d", n, len(tc.in))
			}
			checkRequest(t, &r, tc)
		})
	}
}

func checkRequest(t *testing.T, r *Request, tc reqCase) {
	t.Helper()
	if string(r.Method) != tc.method || string(r.Target) != tc.target || r.Minor != tc.minor {
		t.Errorf("request line: got %q %q 1.%d, want %q %q 1.%d", r.Method, r.Target, r.Minor, tc.method, tc.target, tc.minor)
	}
	switch {
	case tc.host == nil && r.Host != nil:
		t.Errorf("Host: got %q, want nil", r.Host)
	case tc.host != nil && (r.Host == nil || string(r.Host) != *tc.host):
		t.Errorf("Host: got %q (nil %t), want %q", r.Host, r.Host == nil, *tc.host)
	}
	if r.ContentLength != tc.cl {
		t.Errorf("ContentLength: got %d, want %d", r.ContentLength, tc.cl)
	}
	if r.Flags != tc.flags {
		t.Errorf("Flags: got %b, want %b", r.Flags, tc.flags)
	}
	if r.Form != tc.form {
		t.Errorf("Form: got %v, want %v", r.Form, tc.form)
	}
	if got := r.Framing(); got != tc.framing {
		t.Errorf("Framing: got %v, want %v", got, tc.framing)
	}
	if len(r.Fields) != tc.fields {
		t.Errorf("fields: got %d, want %d", len(r.Fields), tc.fields)
	}
}

func TestRequestRejected(t *testing.T) {
	for _, tc := range rejectedRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, err := r.Parse([]byte(tc.in))
			if err != tc.err {
				t.Fatalf("Parse: got n=%d err=%v, want %v", n, err, tc.err)
			}
			if tc.err != ErrVersion && tc.err != ErrTooManyFields && !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) is false", err)
			}
		})
	}
}

// TestRequestSplits parses every prefix of every case: a prefix must give
// ErrIncomplete or the final result, and once it gives the final result
// every longer prefix must too. Bytes after the head change nothing.
func TestRequestSplits(t *testing.T) {
	cases := append(append([]reqCase(nil), acceptedRequests...), rejectedRequests...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			in := []byte(tc.in + "NEXT")
			wantN, wantErr := r.Parse(in)
			if wantErr != tc.err {
				t.Fatalf("whole input: got %v, want %v", wantErr, tc.err)
			}
			decided := false
			for k := 0; k <= len(in); k++ {
				n, err := r.Parse(in[:k])
				switch {
				case err == ErrIncomplete && !decided:
				case err == wantErr && n == wantN:
					decided = true
				default:
					t.Fatalf("prefix %q: got n=%d err=%v, want ErrIncomplete or n=%d err=%v (decided=%t)", in[:k], n, err, wantN, wantErr, decided)
				}
				if tc.err == nil && k < wantN && err != ErrIncomplete {
					t.Fatalf("prefix of %d bytes (head is %d): got %v, want ErrIncomplete", k, wantN, err)
				}
			}
			if tc.err == nil {
				checkRequest(t, &r, tc)
			}
		})
	}
}

// TestRequestReuse checks that a Request parsed once carries nothing over.
func TestRequestReuse(t *testing.T) {
	var r Request
	big := "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
	if _, err := r.Parse([]byte(big)); err != nil {
		t.Fatalf("first Parse: %v", err)
	}
	tc := acceptedRequests[6] // HTTP/1.0 without Host
	if _, err := r.Parse([]byte(tc.in)); err != nil {
		t.Fatalf("second Parse: %v", err)
	}
	checkRequest(t, &r, tc)
}

func TestRequestAuthority(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET http://a.example:8080/x?y HTTP/1.0\r\n\r\n", "a.example:8080"},
		{"GET https://[::1]?q HTTP/1.0\r\n\r\n", "[::1]"},
		{"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n", "b.example:443"},
		{"GET /x HTTP/1.1\r\nHost: c\r\n\r\n", ""},
		{"OPTIONS * HTTP/1.1\r\nHost: c\r\n\r\n", ""},
	}
	for _, tt := range tests {
		var r Request
		if _, err := r.Parse([]byte(tt.in)); err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if got := r.Authority(); string(got) != tt.want || (tt.want == "") != (got == nil) {
			t.Errorf("Authority of %q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}
