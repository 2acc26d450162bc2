package tracing

import (
	"crypto/rand"
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// knownMethods are the methods the HTTP semantic conventions name; any
// other is reported as _OTHER (with the original alongside).
var knownMethods = map[string]bool{
	"CONNECT": true, "DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true,
	"PATCH": true, "POST": true, "PUT": true, "TRACE": true,
}

// attributes are the span's attributes from the record: the HTTP
// semantic conventions' server attributes, the shard.* attributes, and
// for gRPC rpc.grpc.status_code. The key and the query are not among
// them (keys are often account numbers).
func attributes(d *route.Decision) []attribute.KeyValue {
	method := string(d.Method)
	attrs := make([]attribute.KeyValue, 0, 20)
	if knownMethods[method] {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
	}
	version := "1.1"
	if d.Proto == route.HTTP2 {
		version = "2"
	}
	scheme := "http"
	if d.TLS {
		scheme = "https"
	}
	attrs = append(attrs, semconv.URLPath(string(d.Path)), semconv.URLScheme(scheme),
		semconv.NetworkProtocolName("http"), semconv.NetworkProtocolVersion(version))
	// The record's strings may alias the front end's buffers (reused once
	// the request ends), and the span is exported later: copies.
	if host, port, err := net.SplitHostPort(strings.Clone(d.Client)); err == nil {
		p, _ := strconv.Atoi(port)
		attrs = append(attrs, semconv.ClientAddress(host), semconv.ClientPort(p), semconv.NetworkPeerAddress(host))
	}
	if d.Status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(d.Status))
	}
	if d.Status >= 500 {
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(d.Status)))
	}
	attrs = append(attrs, semconv.HTTPRequestBodySize(int(d.BytesIn)), semconv.HTTPResponseBodySize(int(d.BytesOut)))
	if code, ok := d.GRPCStatus(); ok {
		attrs = append(attrs, semconv.RPCSystemGRPC, semconv.RPCGRPCStatusCodeKey.Int(code))
	}
	return appendShard(attrs, d)
}

// appendShard appends the shard.* attributes.
func appendShard(attrs []attribute.KeyValue, d *route.Decision) []attribute.KeyValue {
	if d.Shard != nil {
		attrs = append(attrs, attribute.String("shard.name", d.Shard.Name),
			attribute.Int("shard.ordinal", d.Shard.Ordinal), semconv.ServerAddress(d.Shard.Addr))
	}
	if d.Snapshot != nil && d.Snapshot.Table != nil {
		attrs = append(attrs, attribute.String("shard.ring", d.Snapshot.Table.Fingerprint))
	}
	if d.Rule != "" {
		attrs = append(attrs, attribute.String("shard.rule", d.Rule))
	}
	attrs = append(attrs, attribute.Float64("shard.owner_wait_ms", ms(d.OwnerWait)))
	if d.Previous != "" {
		attrs = append(attrs, attribute.String("shard.previous", d.Previous))
	}
	return attrs
}

func randomTraceID() (id trace.TraceID) {
	_, _ = rand.Read(id[:])
	return id
}

func randomSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}
