package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sendWhile sends keyed requests through p until the returned stop is
// called, so that a rate measured meanwhile is above zero. Key 7 is sent
// most often.
func sendWhile(t *testing.T, p *proxyProc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			key := "7"
			if i%3 == 0 {
				key = strconv.Itoa(i % 10)
			}
			p.send(t, "GET", "/top", key, nil)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func TestTopOnce(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--demo", "3", "--hot-keys-sample", "1", "--admin-token-file", tokenFile)
	auth := map[string]string{"SHARD_PROXY_ADMIN_TOKEN": "s3cret", "SHARD_PROXY_ADMIN": "http://" + p.admin}
	stop := sendWhile(t, p)
	defer stop()

	t.Run("table", func(t *testing.T) {
		code, out, errOut := runCLI(t, auth, "top", "--once", "--interval", "500ms")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if strings.Contains(out, clearScreen) {
			t.Errorf("--once output clears the screen:\n%q", out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 6 || !strings.Contains(lines[0], "N=3, 3 ready") || !strings.HasPrefix(lines[2], "SHARD") {
			t.Fatalf("output:\n%s\nwant a headline with N=3, a header and three shards", out)
		}
		hot := false
		for i, line := range lines[3:] {
			f := strings.Fields(line)
			if len(f) < 6 || f[0] != "demo-"+strconv.Itoa(i) || f[1] != "ready" {
				t.Errorf("row %q, want demo-%d ready …", line, i)
				continue
			}
			if _, err := strconv.ParseFloat(f[2], 64); err != nil {
				t.Errorf("row %q: REQ/S %q is not a number", line, f[2])
			}
			hot = hot || strings.Contains(line, " 7 (")
		}
		if !hot {
			t.Errorf("output:\n%s\nwant hot key 7 on one of the shards", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, errOut := runCLI(t, auth, "top", "--once", "--interval", "500ms", "-n", "1", "-o", "json")
		var f topFrame
		if code != 0 || json.Unmarshal([]byte(out), &f) != nil {
			t.Fatalf("exit %d, output %s %s; want one JSON frame", code, out, errOut)
		}
		var total float64
		for _, s := range f.Shards {
			total += s.RPS
			if len(s.HotKeys) > 1 {
				t.Errorf("%s: %d hot keys with -n 1", s.Shard, len(s.HotKeys))
			}
		}
		if f.Replicas != 3 || len(f.Shards) != 3 || total <= 0 {
			t.Errorf("frame %+v, want 3 shards and requests under way", f)
		}
	})
	t.Run("errors", func(t *testing.T) {
		noToken := map[string]string{"SHARD_PROXY_ADMIN": "http://" + p.admin}
		if code, _, errOut := runCLI(t, noToken, "top", "--once", "--interval", "10ms"); code != 1 || !strings.Contains(errOut, "401") {
			t.Errorf("without token: exit %d, stderr %q; want 1 and a 401", code, errOut)
		}
		if code, _, errOut := runCLI(t, auth, "top", "--interval", "0s"); code != 2 || !strings.Contains(errOut, "--interval") {
			t.Errorf("--interval 0s: exit %d, stderr %q; want 2", code, errOut)
		}
		if code, _, _ := runCLI(t, auth, "top", "extra"); code != 2 {
			t.Errorf("top with an argument: exit %d, want 2", code)
		}
	})
}

func TestParseShardMetrics(t *testing.T) {
	text := `# HELP shard_proxy_requests_total Answers.
# TYPE shard_proxy_requests_total counter
shard_proxy_requests_total{code="200",protocol="http1",shard="web-0"} 90
shard_proxy_requests_total{code="503",protocol="h2",shard="web-0"} 10
shard_proxy_requests_total{code="200",protocol="http1",shard="we\"b-1"} 4
shard_proxy_request_duration_seconds_bucket{shard="web-0",le="0.001"} 50
shard_proxy_request_duration_seconds_bucket{shard="web-0",le="0.01"} 98
shard_proxy_request_duration_seconds_bucket{shard="web-0",le="+Inf"} 100
shard_proxy_request_duration_seconds_sum{shard="web-0"} 0.5
shard_proxy_key_errors_total{reason="no_key"} 3
`
	got := parseShardMetrics(text)
	w0 := got["web-0"]
	if w0 == nil || w0.requests != 100 || w0.errors != 10 || len(w0.buckets) != 3 || w0.buckets[math.Inf(1)] != 100 {
		t.Fatalf("web-0: %+v, want 100 requests, 10 errors, 3 buckets", w0)
	}
	if w1 := got[`we"b-1`]; w1 == nil || w1.requests != 4 {
		t.Errorf("escaped shard name: %+v", got)
	}
	if len(got) != 2 {
		t.Errorf("%d shards, want 2 (key_errors_total has none)", len(got))
	}
	prev := metricsScrape{at: time.Unix(0, 0), shards: map[string]*shardCounters{}}
	row := shardRates("web-0", prev, metricsScrape{at: time.Unix(10, 0), shards: got})
	// rank 99 of 100 lies in (0.001, 0.01], at 49/48 of the way: past the
	// bound, so the +Inf bucket's rule does not apply; 98 < 99 <= 100.
	if row.RPS != 10 || row.ErrorRatio != 0.1 || row.P99S == nil || *row.P99S != 0.01 {
		t.Errorf("rates %+v (p99 %v), want 10/s, 0.1 errors, p99 0.01", row, row.P99S)
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		buckets map[float64]float64
		want    float64
		ok      bool
	}{
		{"empty", map[float64]float64{}, 0, false},
		{"nothing counted", map[float64]float64{0.1: 0, inf: 0}, 0, false},
		{"first bucket", map[float64]float64{0.1: 100, 1: 100, inf: 100}, 0.099, true},
		{"interpolated", map[float64]float64{0.1: 0, 1: 100, inf: 100}, 0.1 + 0.9*0.99, true},
		{"in +Inf", map[float64]float64{0.1: 10, 1: 50, inf: 100}, 1, true},
	} {
		got, ok := quantile(0.99, tc.buckets)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: quantile = %v, %t; want %v, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
