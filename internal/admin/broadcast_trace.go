package admin

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A broadcast is one span (kind server, the child of the caller's span
// when a traceparent came) with a child per shard (kind client), whose
// traceparent the shard receives. Without a TracerProvider nothing is
// traced.

// traceBroadcast starts the broadcast's span; end ends it with the
// report's outcome. ctx carries it to the shards' spans.
func (b *broadcaster) traceBroadcast(r *http.Request, j job) (ctx context.Context, end func(rep *BroadcastReport, status int)) {
	ctx = r.Context()
	if b.cfg.Tracer == nil {
		return ctx, func(*BroadcastReport, int) {}
	}
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, span := b.cfg.Tracer.Tracer("github.com/shard-proxy/shard-proxy/admin").Start(ctx, "broadcast "+j.req.method,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(j.start), trace.WithAttributes(
			attribute.String("http.request.method", j.req.method), attribute.String("broadcast.id", j.id),
			attribute.String("broadcast.policy", string(j.policy)), attribute.Int("broadcast.shards", len(j.targets)+len(j.settled))))
	return ctx, func(rep *BroadcastReport, status int) {
		span.SetAttributes(attribute.Int("http.response.status_code", status),
			attribute.Int("broadcast.succeeded", rep.Succeeded), attribute.Int("broadcast.failed", rep.Failed))
		if status >= 500 {
			span.SetStatus(codes.Error, "policy not met")
		}
		span.End()
	}
}

// traceShard starts the span of one shard's request and returns the
// trace context lines the shard receives in place of the caller's (nil
// when not sampled: the caller's go as they came); end ends it with the
// shard's result.
func (b *broadcaster) traceShard(ctx context.Context, method string, res *ShardResult) (lines []byte, end func()) {
	if b.cfg.Tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return nil, func() {}
	}
	_, span := b.cfg.Tracer.Tracer("github.com/shard-proxy/shard-proxy/admin").Start(ctx, method,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("shard.name", res.Shard), attribute.Int("shard.ordinal", res.Ordinal),
			attribute.String("server.address", res.Address)))
	if span.SpanContext().IsSampled() {
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(trace.ContextWithSpan(ctx, span), carrier)
		for _, name := range []string{"traceparent", "tracestate"} {
			if v := carrier.Get(name); v != "" {
				lines = append(lines, http.CanonicalHeaderKey(name)+": "+v+"\r\n"...)
			}
		}
	}
	return lines, func() {
		if res.Status > 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", res.Status))
		}
		if res.outcome != "success" {
			span.SetStatus(codes.Error, res.outcome)
			if res.Error != "" {
				span.SetAttributes(attribute.String("error.type", res.outcome))
			}
		}
		span.End()
	}
}
