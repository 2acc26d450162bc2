package main

import (
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
