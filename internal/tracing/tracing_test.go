package tracing

import (
	"context"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestSamplerVariables: the OTEL_TRACES_SAMPLER values and their
// defaults; bad values are errors.
func TestSamplerVariables(t *testing.T) {
	s, err := parseSampler("", "")
	if err != nil || !s.parentBased || s.all || s.none || s.bound != uint64(DefaultSamplerArg*float64(uint64(1)<<63)) {
		t.Errorf("default sampler %+v (%v), want parentbased_traceidratio 0.01", s, err)
	}
	for _, bad := range [][2]string{{"sometimes", ""}, {"traceidratio", "2"}, {"traceidratio", "x"}} {
		if _, err := parseSampler(bad[0], bad[1]); err == nil {
			t.Errorf("parseSampler(%q, %q) succeeded", bad[0], bad[1])
		}
	}
	sampled := func(s sampler, tc route.TraceContext) bool { return s.decide(&tc) }
	on, _ := parseSampler("parentbased_traceidratio", "0")
	parentYes := route.TraceContext{Incoming: true, Flags: 1, TraceID: [16]byte{1}, ParentID: [8]byte{2}}
	parentNo := route.TraceContext{Incoming: true, Flags: 0, TraceID: [16]byte{1}, ParentID: [8]byte{2}}
	if !sampled(on, parentYes) || sampled(on, parentNo) || sampled(on, route.TraceContext{}) {
		t.Error("parentbased_traceidratio 0: want the parent's decision, and no root sampled")
	}
	all, _ := parseSampler("always_on", "")
	if !sampled(all, parentNo) || !sampled(all, route.TraceContext{}) {
		t.Error("always_on: want every request sampled")
	}
	// About half of the roots at 0.5 (seedless: the bound is loose).
	half, _ := parseSampler("traceidratio", "0.5")
	n := 0
	for range 4000 {
		if sampled(half, route.TraceContext{}) {
			n++
		}
	}
	if n < 1700 || n > 2300 {
		t.Errorf("traceidratio 0.5 sampled %d of 4000", n)
	}
}

// TestNotSampledAllocatesNothing: a request that is not sampled, with or
// without a traceparent, costs no allocation and gets no span (its
// traceparent is then passed on untouched: Outgoing is nil).
func TestNotSampledAllocatesNothing(t *testing.T) {
	tr, err := New(context.Background(), Config{Getenv: envOf(map[string]string{
		"OTEL_TRACES_SAMPLER_ARG": "0", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	var d route.Decision
	for _, tc := range []route.TraceContext{{}, {Incoming: true, Flags: 0, TraceID: [16]byte{1}, ParentID: [8]byte{2}}} {
		n := testing.AllocsPerRun(1000, func() {
			d.Begin(route.HTTP1, time.Now())
			d.Trace = tc
			tr.Start(&d, nil)
			tr.End(&d, time.Now())
		})
		if n != 0 || d.Trace.Span != nil || d.Trace.Outgoing() != nil {
			t.Errorf("not sampled (%+v): %.1f allocations, span %v, outgoing %q", tc, n, d.Trace.Span, d.Trace.Outgoing())
		}
	}
}

// TestBadVariables: a protocol or sampler the tracer does not know is an
// error at start.
func TestBadVariables(t *testing.T) {
	for _, env := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		{"OTEL_TRACES_SAMPLER": "maybe"},
	} {
		if tr, err := New(context.Background(), Config{Getenv: envOf(env)}); err == nil {
			_ = tr.Shutdown(context.Background())
			t.Errorf("New with %v succeeded", env)
		}
	}
}
