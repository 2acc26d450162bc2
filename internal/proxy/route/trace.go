package route

import (
	"unsafe"
)

// TraceContext is a request's W3C trace context (Trace Context Level 1):
// the traceparent that came, and the proxy's span when the request is
// sampled. With tracing off, or a request not sampled, the traceparent
// that came (if any) goes to the shard untouched; Outgoing is then nil.
type TraceContext struct {
	// TraceID is the trace the request belongs to: the incoming one, or
	// one the tracer made for a sampled request that came without.
	TraceID [16]byte
	// ParentID and Flags are the incoming traceparent's; Incoming tells
	// whether a valid one came.
	ParentID [8]byte
	Flags    byte
	Incoming bool
	// Span is the tracer's span, when the request is sampled; nil
	// otherwise. SpanID is its id: the parent the shard is told of.
	Span   any
	SpanID [8]byte
	out    [traceparentLen]byte // the traceparent for the shard, once Span is set
}

// traceparentLen is the length of a version-00 traceparent value.
const traceparentLen = 55

// Known tells whether the request has a trace id: one came, or the
// tracer made one.
func (t *TraceContext) Known() bool { return t.Incoming || t.Span != nil }

// Sampled tells whether the incoming traceparent has its sampled flag.
func (t *TraceContext) Sampled() bool { return t.Incoming && t.Flags&1 == 1 }

// SetSpan records the tracer's span for a sampled request: its trace,
// its id, and so the traceparent the shard receives (flags 01, sampled).
func (t *TraceContext) SetSpan(span any, traceID [16]byte, spanID [8]byte) {
	t.Span, t.TraceID, t.SpanID = span, traceID, spanID
	b := append(t.out[:0], "00-"...)
	b = appendHex(b, traceID[:])
	b = append(b, '-')
	b = appendHex(b, spanID[:])
	_ = append(b, "-01"...)
}

// Outgoing is the traceparent the shard receives instead of the one that
// came: the proxy's span as parent. Nil when the request is not sampled:
// the incoming traceparent, if any, then passes untouched, and none is
// added.
func (t *TraceContext) Outgoing() []byte {
	if t.Span == nil {
		return nil
	}
	return t.out[:]
}

// OutgoingString is Outgoing as a string aliasing the record ("" when
// nil), for front ends that write fields as strings.
func (t *TraceContext) OutgoingString() string {
	if t.Span == nil {
		return ""
	}
	return unsafe.String(&t.out[0], len(t.out))
}

// parse takes a traceparent value; an invalid one leaves t as it was
// (W3C Trace Context §3.2.2: the request is then treated as a new trace).
func (t *TraceContext) parse(v []byte) {
	if len(v) < traceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return
	}
	var version [1]byte
	if !decodeHex(version[:], v[0:2]) || version[0] == 0xff {
		return
	}
	// Version 00 is exactly 55 bytes; a later version may add fields
	// after a dash, which a version-00 parser skips.
	if version[0] == 0 && len(v) != traceparentLen || len(v) > traceparentLen && v[traceparentLen] != '-' {
		return
	}
	var id [16]byte
	var parent [8]byte
	var flags [1]byte
	if !decodeHex(id[:], v[3:35]) || !decodeHex(parent[:], v[36:52]) || !decodeHex(flags[:], v[53:55]) {
		return
	}
	if id == ([16]byte{}) || parent == ([8]byte{}) {
		return
	}
	t.TraceID, t.ParentID, t.Flags, t.Incoming = id, parent, flags[0], true
}

// decodeHex decodes lower-case hex digits (the only ones traceparent
// allows) into dst, len(src) == 2*len(dst).
func decodeHex(dst, src []byte) bool {
	for i := range dst {
		hi, ok1 := unhex(src[2*i])
		lo, ok2 := unhex(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

// appendHex appends src as lower-case hex.
func appendHex(dst, src []byte) []byte {
	for _, c := range src {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// AppendTraceID appends the trace id as 32 lower-case hex digits.
func (t *TraceContext) AppendTraceID(dst []byte) []byte { return appendHex(dst, t.TraceID[:]) }
