package h1client

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Request is one request sent as it is to many shards: its head is
// written once, when it is made, and each exchange only adds the shard's
// Host (and, when given, its own trace context). A Request is read-only
// once made: any number of exchanges may send it at once.
type Request struct {
	// Method is the request method, as in the request line.
	Method string
	// Body is sent after the head, framed by Content-Length.
	Body []byte

	line   []byte // "METHOD target HTTP/1.1\r\nHost: "
	fields []byte // "\r\n", then every field line but the trace context, then Content-Length
	trace  []byte // the caller's Traceparent and Tracestate lines
}

// excluded are the fields a Request never copies from the header it is
// given: the Host is the shard's, the framing is ours (Content-Length
// from Body, never chunked), and Expect is dropped because the body is
// already in hand and goes at once (as the data plane does when it
// answered 100-continue itself). Hop-by-hop fields are the caller's to
// drop (package header's policy).
var excluded = []string{"Host", "Content-Length", "Transfer-Encoding", "Trailer", "Expect", "Connection"}

// traceFields are the fields an exchange may replace with its own.
var traceFields = []string{"Traceparent", "Tracestate"}

// NewRequest makes the request "method target" with h's fields and body.
// target is the request-target as sent (an origin-form path and query);
// h's keys are canonical (as an http.Header from a server is). It fails
// when the method, target or a field could not be written as one line.
func NewRequest(method, target string, h http.Header, body []byte) (*Request, error) {
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, fmt.Errorf("invalid method %q", method)
	}
	if target == "" || strings.ContainsAny(target, " \r\n\x00") {
		return nil, fmt.Errorf("invalid request target %q", target)
	}
	r := &Request{Method: method, Body: body}
	r.line = append(append(append(r.line, method...), ' '), target...)
	r.line = append(r.line, " HTTP/1.1\r\nHost: "...)
	r.fields = append(r.fields, "\r\n"...)
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names) // as net/http writes them: the same head every time
	for _, name := range names {
		if slices.Contains(excluded, http.CanonicalHeaderKey(name)) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("invalid header field name %q", name)
		}
		dst := &r.fields
		if slices.Contains(traceFields, http.CanonicalHeaderKey(name)) {
			dst = &r.trace
		}
		for _, v := range h[name] {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("invalid value for header field %s", name)
			}
			*dst = appendField(*dst, name, strings.TrimSpace(v))
		}
	}
	if len(body) > 0 || sendsZeroLength(method) {
		r.fields = append(r.fields, "Content-Length: "...)
		r.fields = strconv.AppendInt(r.fields, int64(len(body)), 10)
		r.fields = append(r.fields, "\r\n"...)
	}
	return r, nil
}

// sendsZeroLength tells whether an empty body is announced with
// "Content-Length: 0": for the methods that expect a body, as net/http
// does, so a shard behind a strict server does not answer 411.
func sendsZeroLength(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// appendHead appends the head sent to host: trace, when not nil, replaces
// the caller's trace context lines.
func (r *Request) appendHead(dst []byte, host string, trace []byte) []byte {
	dst = append(dst, r.line...)
	dst = append(dst, host...)
	dst = append(dst, r.fields...)
	if trace != nil {
		dst = append(dst, trace...)
	} else {
		dst = append(dst, r.trace...)
	}
	return append(dst, "\r\n"...)
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}
