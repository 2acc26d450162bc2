// Package tracing exports an OpenTelemetry span per proxied request with
// the official Go SDK and OTLP exporters (gRPC or http/protobuf),
// configured by the standard OTEL_* variables. It implements
// route.Tracer: the routing step starts a request's span from its trace
// context (W3C traceparent), the shard is told of the span as its parent,
// and the span ends with the request's record. A request that is not
// sampled gets no span and costs no allocation; its traceparent passes
// untouched.
package tracing

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "shard-proxy"

// Config configures a Tracer.
type Config struct {
	// Getenv reads the OTEL_* variables; nil means none is set. (The
	// exporters read their own OTEL_EXPORTER_OTLP_* variables from the
	// process environment.)
	Getenv func(string) string
	// Version is the service.version resource attribute; "" leaves it out.
	Version string
	// Logger reports export failures; nil means slog.Default().
	Logger *slog.Logger
}

// Tracer makes the spans. Its methods are safe for concurrent use.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	sampler  sampler
}

var _ route.Tracer = (*Tracer)(nil)

// New builds the exporter the variables name and the provider around it.
// Shutdown flushes and stops it.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	env := cfg.Getenv
	if env == nil {
		env = func(string) string { return "" }
	}
	s, err := parseSampler(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(ctx, env)
	if err != nil {
		return nil, err
	}
	name := env("OTEL_SERVICE_NAME")
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		res = resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	}
	p := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdkSampler{std: s.sdk()}),
		sdktrace.WithIDGenerator(idGenerator{}),
	)
	return &Tracer{provider: p, tracer: p.Tracer("github.com/shard-proxy/shard-proxy"), sampler: s}, nil
}

// newExporter is the OTLP exporter of OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
// (else OTEL_EXPORTER_OTLP_PROTOCOL): grpc, or http/protobuf (the
// specification's default).
func newExporter(ctx context.Context, env func(string) string) (*otlptrace.Exporter, error) {
	proto := env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", proto)
}

// Shutdown exports the spans still buffered and stops the exporter,
// within ctx.
func (t *Tracer) Shutdown(ctx context.Context) error {
	return t.provider.Shutdown(ctx)
}

// Start decides whether the request is sampled and, when it is, starts
// its span (kind server, the child of the client's span when a
// traceparent came) and records it in d.Trace, whose Outgoing is then
// the traceparent the shard receives.
func (t *Tracer) Start(d *route.Decision, req keys.Request) {
	tc := &d.Trace
	if !t.sampler.decide(tc) {
		return
	}
	ctx := context.Background()
	if tc.Incoming {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tc.TraceID, SpanID: tc.ParentID, TraceFlags: trace.TraceFlags(tc.Flags), Remote: true,
			TraceState: traceState(req),
		}))
	}
	ctx = context.WithValue(ctx, decided{}, trace.TraceID(tc.TraceID))
	_, span := t.tracer.Start(ctx, "HTTP", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(d.Start))
	sc := span.SpanContext()
	tc.SetSpan(span, sc.TraceID(), sc.SpanID())
}

// traceState is the request's tracestate (W3C Trace Context §3.3), for
// the span; the field itself goes to the shard as it came. An invalid one
// is left out, as the specification asks.
func traceState(req keys.Request) trace.TraceState {
	if req == nil {
		return trace.TraceState{}
	}
	vals := req.HeaderValues(nil, "tracestate")
	if len(vals) == 0 {
		return trace.TraceState{}
	}
	ts, err := trace.ParseTraceState(string(bytes.Join(vals, []byte(","))))
	if err != nil {
		return trace.TraceState{}
	}
	return ts
}

// Waited adds the hold for a not-ready owner to the span, as an event.
func (t *Tracer) Waited(d *route.Decision, start time.Time, served bool) {
	span, ok := d.Trace.Span.(trace.Span)
	if !ok {
		return
	}
	attrs := []attribute.KeyValue{attribute.Bool("shard.owner_ready", served),
		attribute.Float64("shard.owner_wait_ms", ms(d.OwnerWait))}
	if d.Shard != nil {
		attrs = append(attrs, attribute.String("shard.name", d.Shard.Name))
	}
	span.AddEvent("owner-wait", trace.WithTimestamp(start.Add(d.OwnerWait)), trace.WithAttributes(attrs...))
}

// End sets the span's name and attributes from the record and ends it.
func (t *Tracer) End(d *route.Decision, end time.Time) {
	span, ok := d.Trace.Span.(trace.Span)
	if !ok {
		return
	}
	if len(d.Method) > 0 {
		span.SetName(string(d.Method))
	}
	span.SetAttributes(attributes(d)...)
	switch {
	case d.Status >= 500:
		span.SetStatus(codes.Error, fmt.Sprintf("%d", d.Status))
	case d.Error != "" && d.Status >= 400:
		// A client error: not the server span's error (semantic
		// conventions), but the proxy's message is kept.
		span.SetAttributes(attribute.String("shard.error", d.Error))
	}
	span.End(trace.WithTimestamp(end))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Provider is the tracer provider, for spans other than the requests'
// (a broadcast's): they are sampled by the OTEL_TRACES_SAMPLER sampler.
func (t *Tracer) Provider() trace.TracerProvider { return t.provider }

// decided carries, in a request span's context, the trace id the
// sampler decided on: the span is sampled (sdkSampler) and, for a
// request that came without a trace context, gets exactly that id.
type decided struct{}

// sdkSampler samples a request's span, which the sampler already chose,
// and asks the standard sampler about any other span.
type sdkSampler struct{ std sdktrace.Sampler }

func (s sdkSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.ParentContext.Value(decided{}) != nil {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
			Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
	}
	return s.std.ShouldSample(p)
}

func (s sdkSampler) Description() string { return "shard-proxy(" + s.std.Description() + ")" }

// idGenerator gives a root span the trace id the sampler decided on, and
// random span ids.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	id, _ := ctx.Value(decided{}).(trace.TraceID)
	if !id.IsValid() {
		id = randomTraceID()
	}
	return id, randomSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return randomSpanID() }
