package h1

import (
	"errors"
	"testing"
)

type respCase struct {
	name   string
	in     string
	err    error // nil: accepted
	status int   // accepted only, as are the fields below
	reason string
	minor  int
	cl     int64
	flags  Flags
	fields int
}

var acceptedResponses = []respCase{
	{name: "ok", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: 2, flags: FlagContentLength, fields: 1},
	{name: "http/1.0", in: "HTTP/1.0 404 Not Found\r\n\r\n", status: 404, reason: "Not Found", cl: -1},
	{name: "empty reason", in: "HTTP/1.1 204 \r\n\r\n", status: 204, reason: "", minor: 1, cl: -1},
	{name: "reason with obs-text and tab", in: "HTTP/1.1 599 caf\xe9\tx \r\n\r\n", status: 599, reason: "caf\xe9\tx ", minor: 1, cl: -1},
	{name: "continue", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, reason: "Continue", minor: 1, cl: -1},
	{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: -1,
		flags: FlagTransferEncoding | FlagChunked, fields: 1},
	{name: "gzip then chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;level=\"9\" , x-y\r\nTransfer-Encoding: Chunked\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: -1,
		flags: FlagTransferEncoding | FlagChunked, fields: 2},
	{name: "gzip only", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: -1, flags: FlagTransferEncoding, fields: 1},
	{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: 0,
		flags: FlagConnClose | FlagHopByHop | FlagContentLength, fields: 2},
	{name: "host field is just a field", in: "HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\n\r\n", status: 200, reason: "OK", minor: 1, cl: -1, fields: 2},
	{name: "proxy-authenticate", in: "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", status: 407,
		reason: "Proxy Authentication Required", minor: 1, cl: -1, flags: FlagHopByHop, fields: 1},
}

var rejectedResponses = []respCase{
	{name: "no SP before empty reason", in: "HTTP/1.1 200\r\n\r\n", err: errStatusLine},
	{name: "two SP before status", in: "HTTP/1.1  200 OK\r\n\r\n", err: errStatus},
	{name: "status 099", in: "HTTP/1.1 099 X\r\n\r\n", err: errStatus},
	{name: "status 600", in: "HTTP/1.1 600 X\r\n\r\n", err: errStatus},
	{name: "two-digit status", in: "HTTP/1.1 20 OK\r\n\r\n", err: errStatus},
	{name: "signed status", in: "HTTP/1.1 +20 OK\r\n\r\n", err: errStatus},
	{name: "four-digit status", in: "HTTP/1.1 2000 OK\r\n\r\n", err: errStatusLine},
	{name: "HTTP/1.2", in: "HTTP/1.2 200 OK\r\n\r\n", err: ErrVersion},
	{name: "HTTP/2", in: "HTTP/2 200\r\n\r\n", err: errVersionSyntax},
	{name: "lower-case version", in: "http/1.1 200 OK\r\n\r\n", err: errVersionSyntax},
	{name: "leading empty line", in: "\r\nHTTP/1.1 200 OK\r\n\r\n", err: errVersionSyntax},
	{name: "NUL in reason", in: "HTTP/1.1 200 O\x00K\r\n\r\n", err: errReason},
	{name: "CR in reason", in: "HTTP/1.1 200 O\rK\r\n\r\n", err: errBareCR},
	{name: "bare LF after status line", in: "HTTP/1.1 200 OK\n\r\n", err: errBareLF},
	{name: "bare LF ends head", in: "HTTP/1.1 200 OK\r\nX: y\r\n\n", err: errBareLF},
	{name: "obs-fold", in: "HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", err: errObsFold},
	{name: "space before colon", in: "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", err: errSpaceBeforeColon},
	{name: "content-length with transfer-encoding", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: errCLWithTE},
	{name: "content-length with other coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", err: errCLWithTE},
	{name: "conflicting content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: errCLConflict},
	{name: "chunked not final", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", err: errChunkedNotFinal},
	{name: "chunked twice", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: errChunkedTwice},
	{name: "chunked with parameter", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", err: errTEInvalid},
	{name: "bad coding parameter", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;x=\"1, chunked\r\n\r\n", err: errTEInvalid},
	{name: "transfer-encoding in HTTP/1.0", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", err: errTE10},
	{name: "trailer announces transfer-encoding", in: "HTTP/1.1 200 OK\r\nTrailer: Transfer-Encoding\r\n\r\n", err: errTrailerFraming},
}

func TestResponseAccepted(t *testing.T) {
	for _, tc := range acceptedResponses {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			n, err := r.Parse([]byte(tc.in))
			if err != nil || n != len(tc.in) {
				t.Fatalf("Parse: got n=%d err=%v, want n=%d err=nil", n, err, len(tc.in))
			}
			checkResponse(t, &r, tc)
		})
	}
}

func checkResponse(t *testing.T, r *Response, tc respCase) {
	t.Helper()
	if r.Status != tc.status || string(r.Reason) != tc.reason || r.Minor != tc.minor {
		t.Errorf("status line: got 1.%d %d %q, want 1.%d %d %q", r.Minor, r.Status, r.Reason, tc.minor, tc.status, tc.reason)
	}
	if r.ContentLength != tc.cl || r.Flags != tc.flags || len(r.Fields) != tc.fields {
		t.Errorf("head: got cl=%d flags=%b fields=%d, want cl=%d flags=%b fields=%d",
			r.ContentLength, r.Flags, len(r.Fields), tc.cl, tc.flags, tc.fields)
	}
}

func TestResponseRejected(t *testing.T) {
	for _, tc := range rejectedResponses {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			n, err := r.Parse([]byte(tc.in))
			if err != tc.err {
				t.Fatalf("Parse: got n=%d err=%v, want %v", n, err, tc.err)
			}
			if tc.err != ErrVersion && !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) is false", err)
			}
		})
	}
}

func TestResponseSplits(t *testing.T) {
	cases := append(append([]respCase(nil), acceptedResponses...), rejectedResponses...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			in := []byte(tc.in + "BODY")
			wantN, wantErr := r.Parse(in)
			if wantErr != tc.err {
				t.Fatalf("whole input: got %v, want %v", wantErr, tc.err)
			}
			decided := false
			for k := 0; k <= len(in); k++ {
				n, err := r.Parse(in[:k])
				switch {
				case err == ErrIncomplete && !decided && (tc.err != nil || k < wantN):
				case err == wantErr && n == wantN && (tc.err != nil || k >= wantN):
					decided = true
				default:
					t.Fatalf("prefix %q: got n=%d err=%v, want ErrIncomplete or n=%d err=%v", in[:k], n, err, wantN, wantErr)
				}
			}
			if tc.err == nil {
				checkResponse(t, &r, tc)
			}
		})
	}
}

func TestResponseFraming(t *testing.T) {
	const (
		cl      = "Content-Length: 5\r\n"
		chunked = "Transfer-Encoding: chunked\r\n"
		gzip    = "Transfer-Encoding: gzip\r\n"
	)
	tests := []struct {
		name, status, fields, method string
		want                         Framing
		informational                bool
	}{
		{"length", "200", cl, "GET", FramingLength, false},
		{"chunked", "200", chunked, "POST", FramingChunked, false},
		{"other coding", "200", gzip, "GET", FramingClose, false},
		{"nothing declared", "200", "", "GET", FramingClose, false},
		{"HEAD", "200", cl, "HEAD", FramingNone, false},
		{"HEAD chunked", "200", chunked, "HEAD", FramingNone, false},
		{"continue", "100", cl, "GET", FramingNone, true},
		{"early hints", "103", "", "GET", FramingNone, true},
		{"switching protocols", "101", "", "GET", FramingTunnel, false},
		{"no content", "204", cl, "GET", FramingNone, false},
		{"not modified", "304", chunked, "GET", FramingNone, false},
		{"CONNECT 200", "200", "", "CONNECT", FramingTunnel, false},
		{"CONNECT 200 with length", "200", cl, "CONNECT", FramingTunnel, false},
		{"CONNECT 407", "407", cl, "CONNECT", FramingLength, false},
		{"method is case-sensitive", "200", cl, "head", FramingLength, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Response
			if _, err := r.Parse([]byte("HTTP/1.1 " + tt.status + " X\r\n" + tt.fields + "\r\n")); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := r.Framing([]byte(tt.method)); got != tt.want {
				t.Errorf("Framing(%s): got %v, want %v", tt.method, got, tt.want)
			}
			if got := r.Informational(); got != tt.informational {
				t.Errorf("Informational: got %t, want %t", got, tt.informational)
			}
		})
	}
}
