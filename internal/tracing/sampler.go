package tracing

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// sampler decides, before any span exists, whether a request is traced:
// the OTEL_TRACES_SAMPLER samplers of the specification, computed on the
// request's trace context alone so that a request not sampled costs no
// allocation. The SDK then samples every span it is asked for.
type sampler struct {
	parentBased bool
	// root decides for a request that came without a trace context:
	// bound is the trace-id ratio bound (as the SDK's TraceIDRatioBased
	// computes it); all and none are always_on and always_off.
	all, none bool
	bound     uint64
}

// Defaults of the OTEL_TRACES_SAMPLER variables (DESIGN.md section 15).
const (
	DefaultSampler    = "parentbased_traceidratio"
	DefaultSamplerArg = 0.01
)

// parseSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
func parseSampler(name, arg string) (sampler, error) {
	if name == "" {
		name = DefaultSampler
	}
	ratio := DefaultSamplerArg
	if arg != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || r < 0 || r > 1 {
			return sampler{}, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", arg)
		}
		ratio = r
	}
	var s sampler
	base := name
	if b, ok := strings.CutPrefix(name, "parentbased_"); ok {
		s.parentBased, base = true, b
	}
	switch base {
	case "always_on":
		s.all = true
	case "always_off":
		s.none = true
	case "traceidratio":
		s.all, s.none = ratio >= 1, ratio <= 0
		s.bound = uint64(ratio * (1 << 63))
	default:
		return sampler{}, fmt.Errorf("OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	}
	return s, nil
}

// sdk is the same sampler as the SDK's, for spans the sampler does not
// decide on itself (a broadcast's).
func (s *sampler) sdk() sdktrace.Sampler {
	root := sdktrace.TraceIDRatioBased(float64(s.bound) / (1 << 63))
	switch {
	case s.all:
		root = sdktrace.AlwaysSample()
	case s.none:
		root = sdktrace.NeverSample()
	}
	if s.parentBased {
		return sdktrace.ParentBased(root)
	}
	return root
}

// decide tells whether the request of t is sampled; for a request that
// came without a trace context it draws the trace id the span will have.
func (s *sampler) decide(t *route.TraceContext) bool {
	if s.parentBased && t.Incoming {
		return t.Sampled()
	}
	if !t.Incoming {
		binary.BigEndian.PutUint64(t.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t.TraceID[8:], rand.Uint64()|1) // never all zero
	}
	switch {
	case s.all:
		return true
	case s.none:
		return false
	}
	// The SDK's TraceIDRatioBased: the trace id's low 63 bits.
	return binary.BigEndian.Uint64(t.TraceID[8:16])>>1 < s.bound
}
