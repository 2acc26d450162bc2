package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

const sampleLines = `[bench 10:00:00] noise that is not a result
BENCH system=shard-proxy test=stream status=200 headers_ms=1805.5 ttfb_ms=1805.5 ttlb_ms=1805.5 bytes=640 bursts=1 framing=content-length hwm_kib=24656 alive=1 guard_killed=0
BENCH system=haproxy test=stream status=200 headers_ms=0.5 ttfb_ms=0.5 ttlb_ms=1805.6 bytes=640 bursts=10 framing=chunked hwm_kib=16748 alive=1 guard_killed=0
BENCH system=nginx test=stream note="did not start: [emerg] bind() to 127.0.0.1:18080 failed (98: \"Address in use\")"
BENCH system=haproxy test=download50 clients=50 bytes=67108864 ok=50 statuses=200:50 mib_s=946 seconds=3.4 hwm_kib=17828 rss_after_kib=17828 after_s=5.000 alive=1
BENCH system=shard-proxy test=download50 clients=50 bytes=67108864 ok=48 statuses=200:48,error:2 err="read: connection reset by peer" mib_s=300 seconds=9.9 hwm_kib=3309888 rss_after_kib=3309888 after_s=5.000 alive=1
BENCH system=shard-proxy test=hugecl declared=68719476736 status=0 content_length=-1 bytes=0 client_err="unexpected EOF" seconds=0.07 next_status=0 next_err="dial: connection refused" hwm_kib=24580 alive=0 guard_killed=0 exit_status=2 last_words="fatal error: runtime: out of memory"
BENCH system=haproxy test=hugecl declared=68719476736 status=200 content_length=68719476736 bytes=65536 client_err="unexpected EOF" seconds=3.0 next_status=200 hwm_kib=16804 alive=1 guard_killed=0
`

func TestParseLinesQuotedValues(t *testing.T) {
	recs, err := benchline.Parse(strings.NewReader(sampleLines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 {
		t.Fatalf("got %d records, want 7 (the log line is not one)", len(recs))
	}
	if got, want := recs[2]["note"], `did not start: [emerg] bind() to 127.0.0.1:18080 failed (98: "Address in use")`; got != want {
		t.Errorf("note: got %q, want %q", got, want)
	}
	if got := recs[4]["err"]; got != "read: connection reset by peer" {
		t.Errorf("err: got %q", got)
	}
	if got := recs[4]["mib_s"]; got != "300" {
		t.Errorf("a value after a quoted one: got %q", got)
	}
	if _, err := benchline.Parse(strings.NewReader("BENCH system=x test=y broken\n"), lineKeys...); err == nil {
		t.Error("a word without = was accepted")
	}
}

// The line memload prints is the line report reads.
func TestResultRoundTrip(t *testing.T) {
	r := newResult(&common{system: "nginx", test: "upload"})
	r.set("status", 413)
	r.set("err", errors.New(`write: broken "pipe"`))
	r.set("none", nil)
	r.set("mib_s", 12.5)
	recs, err := benchline.Parse(strings.NewReader(r.String()), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	got := recs[0]
	if got["system"] != "nginx" || got["test"] != "upload" || got["status"] != "413" ||
		got["err"] != `write: broken "pipe"` || got["mib_s"] != "12.500" {
		t.Errorf("round trip: got %v from %q", got, r.String())
	}
	if _, ok := got["none"]; ok {
		t.Errorf("an empty value was printed: %q", r.String())
	}
}

func TestMarkdown(t *testing.T) {
	recs, err := benchline.Parse(strings.NewReader(sampleLines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	md := markdown(recs)
	for _, want := range []string{
		// ratios against HAProxy's row of the same test
		"| shard-proxy | chunked | 200 | content-length | 1805.5 | 1805.5 | 1805.5 | 1 | 3611x |",
		"| HAProxy | chunked | 200 | chunked | 0.5 | 0.5 | 1805.6 | 10 | 1.00x |",
		// a system that did not run is n/a, with the reason in the notes
		"| nginx | n/a |",
		`- nginx, stream: did not start: [emerg] bind() to 127.0.0.1:18080 failed (98: "Address in use")`,
		"| shard-proxy | 48/50 | 200:48,error:2 (read: connection reset by peer) |  | 9.90 |",
		"RSS after: VmRSS 5 s after",
		"| 3232.3 | 3232.3 | 186x | 186x |",
		// a proxy that died: said in the table and, with its last words, in the notes
		"| shard-proxy | no answer |  | 0 | unexpected EOF | 0.07 | **no** | dial: connection refused | 24.0 | 1.46x |",
		"- shard-proxy, hugecl: proxy died, exit status 2, its last words: `fatal error: runtime: out of memory`",
		"## A shard declaring Content-Length: 68719476736 (64 GiB)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	// Tests that did not run have no table.
	for _, absent := range []string{"upload (POST", "Idle keep-alive", "one client"} {
		if strings.Contains(md, absent) {
			t.Errorf("markdown has a table for a test that did not run: %q", absent)
		}
	}
}

func TestShortErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{io.ErrUnexpectedEOF, "unexpected EOF"},
		{io.EOF, "EOF"},
		{nil, ""},
	} {
		if got := short(tc.err); got != tc.want {
			t.Errorf("short(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestKeyIsStableAndTenDigits(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		k := key(42, i)
		if len(k) != 10 || k[0] != '1' {
			t.Fatalf("key(42, %d) = %q, want ten digits starting with 1", i, k)
		}
		if k != key(42, i) {
			t.Fatal("key is not deterministic")
		}
		seen[k] = true
	}
	if len(seen) < 990 {
		t.Errorf("only %d distinct keys of 1000", len(seen))
	}
}

func TestSlowUploadPaceNote(t *testing.T) {
	lines := `BENCH system=haproxy test=slowupload clients=500 bytes=4194304 chunk=65536 gap_ms=100.000 ok=500 statuses=200:500 upload_p50_s=12.35 hwm_kib=22000 fast_n=300 fast_err=0 fast_p50_ms=19 fast_p99_ms=312
BENCH system=nginx test=slowupload clients=500 bytes=4194304 chunk=65536 gap_ms=100.000 ok=500 statuses=200:500 upload_p50_s=6.5 hwm_kib=24000 fast_n=9000 fast_err=0 fast_p50_ms=0.3 fast_p99_ms=4
`
	recs, err := benchline.Parse(strings.NewReader(lines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	md := markdown(recs)
	if !strings.Contains(md, "(the pace alone takes 6.3 s)") {
		t.Errorf("no pace in\n%s", md)
	}
	if !strings.Contains(md, "- HAProxy, slowupload: the uploads took 12.3 s (median) where their pace takes 6.3 s") {
		t.Errorf("no note on the pace not held in\n%s", md)
	}
	if strings.Contains(md, "- nginx, slowupload: the uploads took") {
		t.Errorf("a pace that held got a note:\n%s", md)
	}
}

func TestStallTables(t *testing.T) {
	lines := `BENCH system=shard-proxy test=h2stall conns=50 streams=100 bytes=1048576 hold_s=5 after_s=2 opened=50 heads=5000 head_statuses=200:5000 data_bytes=0 rss_before_kib=25600 rss_hold_kib=266240 rss_after_kib=266240 fast_n=3056 fast_err=0 fast_p50_ms=0.453 fast_p99_ms=2.176 hwm_kib=266240 alive=1
BENCH system=haproxy test=h2stall conns=50 streams=100 bytes=1048576 hold_s=5 after_s=2 opened=50 heads=5000 head_statuses=200:5000 data_bytes=0 rss_before_kib=16384 rss_hold_kib=133120 rss_after_kib=66560 fast_n=2000 fast_err=1 fast_first_err="status 503" fast_p50_ms=0.5 fast_p99_ms=4.352 hwm_kib=133120 alive=1
BENCH system=shard-proxy test=blackhole mode=blackhole clients=200 rate=2000 warmup_s=2 duration_s=10 delay_s=5 stalled_shard=18084 shards=4 base_other_n=15000 base_other_rps=1500 base_other_p50_ms=0.4 base_other_p99_ms=2 base_other_p999_ms=9 base_other_statuses=200:15000 stall_other_n=14990 stall_other_rps=1499 stall_other_p50_ms=0.4 stall_other_p99_ms=5 stall_other_p999_ms=20 stall_other_statuses=200:14990,502:2 stall_stalled_answered=0 base_stalled_cut=2 stall_stalled_cut=48 stall_stalled_moved=0 stuck_clients=50 stall_core=0.31 hwm_kib=34816 alive=1
BENCH system=haproxy test=blackhole mode=blackhole clients=200 rate=2000 warmup_s=2 duration_s=10 delay_s=5 stalled_shard=18084 shards=4 base_other_n=15000 base_other_rps=1500 base_other_p50_ms=0.4 base_other_p99_ms=2.5 base_other_p999_ms=9 base_other_statuses=200:15000 stall_other_n=15000 stall_other_rps=1500 stall_other_p50_ms=0.4 stall_other_p99_ms=2.5 stall_other_p999_ms=9 stall_other_statuses=200:15000 stall_stalled_statuses=504:3 stall_stalled_answered=3 stall_stalled_p50_ms=4000 stall_stalled_cut=47 stall_stalled_moved=0 stuck_clients=47 hwm_kib=20480 alive=1
BENCH system=nginx test=blackhole note="sanity check failed: no answer"
`
	recs, err := benchline.Parse(strings.NewReader(lines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	md := markdown(recs)
	for _, want := range []string{
		"## 50 HTTP/2 clients at window 0, 100 streams each for 1 MiB",
		"| shard-proxy | 25.0 | 260.0 | 260.0 | 260.0 | 3056 | 0 | 0.453 | 2.176 |  | 2.00x | 4.00x | 0.50x |",
		"| HAProxy | 50/50 | 5000/5000 | 200:5000 | 0 |",
		"- HAProxy, h2stall: first error of the fast client: status 503",
		"## One shard reading every request and never answering (blackhole)",
		// the stalled phase against the baseline of the same process, and against HAProxy's stalled phase
		"| shard-proxy | shard stalled | 14990 | 1499 | 0.400 | 5.000 | 20.000 | 502:2 | 2.50x | 2.00x | 31% |",
		"| HAProxy | baseline | 15000 | 1500 | 0.400 | 2.500 | 9.000 | 0 | 1.00x | 1.00x |",
		"| shard-proxy | 50 | 0 |  |  | 0 | 50 | 50 | 34.0 | 1.70x |",
		"| HAProxy | 50 | 3 | 504:3 | 4.00 | 0 | 47 | 47 | 20.0 | 1.00x |",
		"| nginx | n/a |",
		"- nginx, blackhole: sanity check failed: no answer",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}
