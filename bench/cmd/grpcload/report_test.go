package main

import (
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

const sampleLines = `
BENCH round=1 scenario=grpc system=shard-proxy calls=100 seconds=10.000 rps=8000.000 p50_us=2000 p99_us=6000 errors=0 cpu_us=60.000 cpu_util=0.480 hwm_kib=32768
BENCH round=1 scenario=grpc system=haproxy calls=100 seconds=10.000 rps=10000.000 p50_us=1500 p99_us=4000 errors=0 cpu_us=30.000 cpu_util=0.300 hwm_kib=16384
BENCH round=1 scenario=grpc system=nginx calls=100 seconds=10.000 rps=9000.000 p50_us=1600 p99_us=3000 errors=2 error_codes=Unavailable:2 first_error="rpc error: code = Unavailable desc = x" cpu_us=40.000 cpu_util=0.360 hwm_kib=12288
BENCH round=1 scenario=grpc system=direct calls=100 seconds=10.000 rps=20000.000 p50_us=1000 p99_us=2000 errors=0
BENCH round=2 scenario=grpc system=shard-proxy calls=100 seconds=10.000 rps=9000.000 p50_us=2000 p99_us=6000 errors=0 cpu_us=50.000 cpu_util=0.450 hwm_kib=33792
BENCH round=2 scenario=grpc system=haproxy calls=100 seconds=10.000 rps=9000.000 p50_us=1500 p99_us=6000 errors=0 cpu_us=25.000 cpu_util=0.300 hwm_kib=16384
BENCH round=2 scenario=grpc system=nginx note="sanity check failed: key 1 went to shard 18081, then to 18082"
BENCH round=1 scenario=h2 system=nginx note="unsupported: nginx's proxy_pass cannot speak HTTP/2 to a shard"
BENCH round=1 scenario=h2 system=haproxy calls=100 seconds=10.000 rps=5000.000 p50_us=1500 p99_us=4000 errors=0 cpu_us=30.000 cpu_util=0.300 hwm_kib=16384
`

func TestReportRatiosAndMedians(t *testing.T) {
	recs, err := benchline.Parse(strings.NewReader(sampleLines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	cells := summarize(recs, "grpc")
	by := map[string]cell{}
	for _, c := range cells {
		by[c.system] = c
	}
	sp := by["shard-proxy"]
	// Round 1: 0.8 of HAProxy; round 2: 1.0. Median 0.9.
	if !near(sp.vsHA.rps, 0.9) || !near(sp.rps, 8500) || sp.hwmKiB != 33792 {
		t.Errorf("shard-proxy: %+v", sp)
	}
	// Best of HAProxy/nginx per figure: round 1 rps 10000 (HAProxy), p99
	// 3000 (nginx), CPU 30 (HAProxy); round 2 only HAProxy measured.
	if !near(sp.vsBest.rps, (0.8+1.0)/2) || !near(sp.vsBest.p99, (2.0+1.0)/2) || !near(sp.vsBest.cpu, (2.0+2.0)/2) {
		t.Errorf("shard-proxy against the best: %+v", sp.vsBest)
	}
	ng := by["nginx"]
	if ng.rounds != 1 || ng.errors != 2 || len(ng.notes) != 1 || len(ng.errs) != 1 {
		t.Errorf("nginx: %+v", ng)
	}
	d := by["direct"]
	if d.cpu != 0 || !near(d.vsHA.rps, 2) || d.vsHA.cpu != 0 {
		t.Errorf("direct: %+v", d)
	}
	if order := []string{cells[0].system, cells[1].system, cells[2].system, cells[3].system}; strings.Join(order, " ") != "shard-proxy haproxy nginx direct" {
		t.Errorf("order %v", order)
	}

	md := markdown(recs)
	for _, want := range []string{
		"## gRPC unary calls",
		"| shard-proxy | 8500 | 2.000 | 6.000 | 0 | 55.0 | 46% | 0.90× |",
		"| direct (ceiling) | 20000 |",
		"| nginx | n/a |",
		"nginx: round 2: sanity check failed",
		"nginx: round 1: 2 errors (Unavailable:2; first: rpc error",
		"Every round:",
		"## Plain HTTP/2 GETs",
		"A call here is one GET",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestReportVariants: the access log and tracing systems are measured
// against shard-proxy in their own round (round 2's trace1 against round
// 2's shard-proxy, not round 1's), and a round whose shard-proxy failed
// gives no ratio.
func TestReportVariants(t *testing.T) {
	lines := sampleLines + `
BENCH round=1 scenario=grpc system=shard-proxy-trace1 calls=100 seconds=10.000 rps=7600.000 p50_us=2000 p99_us=6000 errors=0 cpu_us=66.000 cpu_util=0.480 hwm_kib=32768
BENCH round=2 scenario=grpc system=shard-proxy-trace1 calls=100 seconds=10.000 rps=9000.000 p50_us=2000 p99_us=6000 errors=0 cpu_us=50.000 cpu_util=0.450 hwm_kib=33792
BENCH round=1 scenario=grpc system=shard-proxy-trace100 calls=100 seconds=10.000 rps=4000.000 p50_us=2000 p99_us=6000 errors=0 cpu_us=120.000 cpu_util=0.480 hwm_kib=32768
BENCH round=1 scenario=h2 system=shard-proxy note="did not start"
BENCH round=1 scenario=h2 system=shard-proxy-log calls=100 seconds=10.000 rps=5000.000 p50_us=1500 p99_us=4000 errors=0 cpu_us=30.000 cpu_util=0.300 hwm_kib=16384
`
	recs, err := benchline.Parse(strings.NewReader(lines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	md := markdown(recs)
	for _, want := range []string{
		"| shard-proxy, tracing 1% | 0.97× | 1.05× | 0.95 1.00 | 1.10 1.00 |",
		"| shard-proxy, tracing 100% | 0.50× | 2.00× | 0.50 | 2.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "Against shard-proxy with the access log") != 1 {
		t.Errorf("the variants table once, for gRPC only (h2's shard-proxy failed):\n%s", md)
	}
}

func TestParseH2load(t *testing.T) {
	out := []byte(`starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Main benchmark duration is started for thread #0.

finished in 3.00s, 22524.33 req/s, 1.23MB/s
requests: 67573 total, 67637 started, 67573 done, 67570 succeeded, 3 failed, 1 errored, 0 timeout
status codes: 67570 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 3.70MB (3878391) total, 1.21MB (1268651) headers (space savings 94.03%), 131.98KB (135146) data
`)
	st, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.seconds != 3 || st.succeeded != 67570 || st.failed != 3 || st.errored != 1 || !strings.HasPrefix(st.statuses, "67570 2xx") {
		t.Errorf("%+v", st)
	}
	if _, err := parseH2load([]byte("connect: Connection refused\n")); err == nil {
		t.Error("no summary, no error")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
