package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `# round system scenario rps p50_us p99_us errors hwm_kib cpu_us_per_req cpu_util load1 note
1	shard-proxy	header	30000	1600	5000	0	28000	30	0.99	3.0	
1	haproxy	header	20000	1500	4000	0	15000	25	0.98	3.0	
1	nginx	body	0	0	0	0	0	0	0	0	unsupported: no JSON
2	shard-proxy	header	10000	1600	9000	2	30000	40	0.99	3.0	
2	haproxy	header	20000	1500	6000	0	15000	20	0.98	3.0	
`

func TestSummarizeTakesRatiosWithinARound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := readRows(path)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := find(summarize(rows), "shard-proxy", "header")
	if !ok {
		t.Fatal("no shard-proxy header cell")
	}
	// Ratios are taken per round (1.5 and 0.5) and then the median: each
	// round compares systems under the same machine conditions.
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"rps", c.rps, 20000},
		{"rps ratio", c.rpsRatio, 1.0},
		{"p99 ratio", c.p99Ratio, (5000.0/4000 + 9000.0/6000) / 2},
		{"cpu ratio", c.cpuRatio, (30.0/25 + 40.0/20) / 2},
		{"errors", float64(c.errors), 2},
		{"peak RSS", float64(c.hwmKiB), 30000},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestMarkdownMarksUnsupportedAndTargets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := readRows(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeMarkdown(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| nginx | body | n/a |",
		"unsupported: no JSON",
		"| header req/s ≥ 1.0x HAProxy | 1.00x | yes |",
		"| 0 errors | 2 | no |",
		"| 2 | shard-proxy | header | 10000 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestChartIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := readRows(path)
	if err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(png, summarize(rows)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "\x89PNG") {
		t.Errorf("%s is not a PNG", png)
	}
}

// Issue 22's targets compare shard-proxy with whichever of nginx and
// HAProxy was faster in each round (not always the same one), and Caddy is
// reported beside them.
func TestPeerTargetsTakeTheFasterPeerPerRound(t *testing.T) {
	const rows4 = `1	shard-proxy	path	21000	1000	2000	0	1	10	1	1	
1	haproxy	path	20000	1000	2000	0	1	11	1	1	
1	nginx	path	15000	1000	1000	0	1	5	1	1	
1	caddy	path	9000	1000	4000	0	1	30	1	1	
2	shard-proxy	path	22000	1000	2000	0	1	10	1	1	
2	haproxy	path	15000	1000	1000	0	1	5	1	1	
2	nginx	path	20000	1000	2000	0	1	11	1	1	
2	caddy	path	9000	1000	4000	0	1	30	1	1	
`
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte(rows4), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := readRows(path)
	if err != nil {
		t.Fatal(err)
	}
	rps, cpu, p99, n := peerRatios(rows, "path")
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if n != 2 || !near(rps, 1.075) || !near(cpu, 10.0/11) || !near(p99, 1) {
		t.Errorf("peerRatios = %v, %v, %v over %d rounds; want 1.075, 0.909, 1 over 2", rps, cpu, p99, n)
	}
	var b strings.Builder
	if err := writeMarkdown(&b, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| Caddy | path | 9000 |", "| path | 2 | 1.08x | 0.91x | 1.00x | yes |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}
