package route

import (
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
)

// Tracer makes a request's span from its Decision (package tracing):
// Start when the routing step begins, with the request's trace context
// parsed into d.Trace; Waited after a hold for the owner; End when the
// request ends. Start decides whether the request is sampled; for one
// that is not it must not allocate, and it leaves d.Trace.Span nil, which
// spares the other two calls.
type Tracer interface {
	Start(d *Decision, req keys.Request)
	Waited(d *Decision, start time.Time, served bool)
	End(d *Decision, end time.Time)
}

// Recorder writes a request's access log line from its Decision when it
// ends (package accesslog). It must not keep d, nor block.
type Recorder interface {
	Record(d *Decision, end time.Time)
}

// Exchange is what only the front end knows of a request and its answer,
// filled in on its Decision for the access log line and the span. Byte
// slices, and Client, alias the front end's memory: valid until Done
// returns, so a Recorder or Tracer that keeps them copies them.
type Exchange struct {
	// Method, Path and Query are the request's, as received (Path
	// without the query; Query without '?').
	Method, Path, Query []byte
	// Client is the client's address; TLS tells whether it spoke TLS.
	Client string
	TLS    bool
	// GRPC marks a gRPC call; grpcStatus is its status, once known.
	GRPC       bool
	grpcStatus int // the code + 1; 0 while unknown
	// BytesIn and BytesOut count the body bytes relayed to the shard and
	// to the client (a proxy's own answer's body included).
	BytesIn, BytesOut int64
	// TTFB is the time from Start to the shard's first answer byte; 0
	// when no shard answered.
	TTFB time.Duration
	// Error is the message of the proxy's own answer, when it gave one.
	Error string
	// Trace is the request's W3C trace context.
	Trace TraceContext
}

// Describe fills in the request's side of the record: method, path and
// query as received, the client's address and whether it spoke TLS.
func (d *Decision) Describe(method, path, query []byte, client string, tls bool) {
	d.Method, d.Path, d.Query, d.Client, d.TLS = method, path, query, client, tls
}

// DescribeString is Describe for a front end that holds the method as a
// string (HTTP/2); the record aliases it.
func (d *Decision) DescribeString(method string, path, query []byte, client string, tls bool) {
	d.Describe(unsafe.Slice(unsafe.StringData(method), len(method)), path, query, client, tls)
}

// SetGRPCStatus records a gRPC call's status code.
func (d *Decision) SetGRPCStatus(code int) { d.grpcStatus = code + 1 }

// GRPCStatus returns the gRPC call's status code, when one is known.
func (d *Decision) GRPCStatus() (int, bool) { return d.grpcStatus - 1, d.grpcStatus > 0 }

// ShardAnswered notes the shard's first answer byte (TTFB), once.
func (d *Decision) ShardAnswered() {
	if d.TTFB == 0 {
		d.TTFB = max(time.Since(d.Start), 1)
	}
}

// Answered records the proxy's own answer: its status, its message and
// its body's length.
func (d *Decision) Answered(status int, msg string, bodyLen int) {
	d.Status, d.Error, d.BytesOut = status, msg, int64(bodyLen)
}

// Records tells whether d's request is logged or traced: the access log
// is on, or the tracer sampled it. Asked once the routing step began
// (Route), when the tracer has decided; a front end keeps for the record
// (copies of its method, path, key, client address) only what a request
// it records needs, so that one that is neither logged nor sampled costs
// what an untraced one does.
func (r *Router) Records(d *Decision) bool { return r.cfg.AccessLog != nil || d.Trace.Span != nil }

// DescribeNow tells a front end whether to describe d's request
// (Describe) at this point: before its routing step (routed false) when
// the access log is on, as every request has a line, a request refused
// before its routing step too; right after the routing step's first pass
// (routed true) when only the tracer is on and it sampled the request.
// Only then is there a span to describe; before the routing step the
// tracer has not decided.
func (r *Router) DescribeNow(d *Decision, routed bool) bool {
	if r.cfg.AccessLog != nil {
		return !routed
	}
	return routed && d.Trace.Span != nil
}

// Committed tells whether the request went to its owner (Commit).
func (d *Decision) Committed() bool { return d.committed }

// startTrace reads the request's traceparent, when the access log or a
// tracer wants it, and lets the tracer start the request's span.
func (r *Router) startTrace(d *Decision, req keys.Request, s *keys.Scratch) {
	if r.cfg.Tracer == nil && r.cfg.AccessLog == nil || d.traced {
		return
	}
	d.traced = true // a body rule takes the step twice; one trace context
	// Two traceparent fields are no trace context (W3C Trace Context
	// §3.2): the request is treated as one that came without.
	if vals := s.HeaderValues(req, "traceparent"); len(vals) == 1 {
		d.Trace.parse(vals[0])
	}
	if r.cfg.Tracer != nil {
		r.cfg.Tracer.Start(d, req)
	}
}

// record ends the request's span and writes its log line: nothing, not
// even the time, for a request that is neither logged nor sampled.
func (r *Router) record(d *Decision) {
	if !r.Records(d) {
		return
	}
	end := time.Now()
	if r.cfg.Tracer != nil && d.Trace.Span != nil {
		r.cfg.Tracer.End(d, end)
	}
	if r.cfg.AccessLog != nil {
		r.cfg.AccessLog.Record(d, end)
	}
}
