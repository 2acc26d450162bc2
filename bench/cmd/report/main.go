// Command report turns the raw rows that run.sh measured into the markdown
// tables and the PNG chart of the side-by-side benchmark.
//
// Ratios are taken within one round, against HAProxy on the same scenario,
// because the machine is shared: absolute figures drift between runs, ratios
// measured minutes apart on the same cores much less. With several rounds the
// summary shows medians.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

// Order of systems and scenarios in tables and charts.
var (
	systemOrder   = []string{"shard-proxy", "candidate", "haproxy", "nginx", "caddy", "direct"}
	scenarioOrder = []string{"header", "path", "body"}
	systemTitle   = map[string]string{
		"shard-proxy": "shard-proxy", "candidate": "shard-proxy (candidate)", "haproxy": "HAProxy", "nginx": "nginx", "caddy": "Caddy", "direct": "direct (ceiling)",
	}
)

// Targets of issue 5.
const (
	targetHeaderRPS = 1.0  // header req/s ≥ this × HAProxy's
	targetHeaderP99 = 1.2  // header p99 ≤ this × HAProxy's
	targetBodyOfOwn = 0.8  // body req/s ≥ this × shard-proxy's header req/s
	targetRSSMiB    = 64.0 // VmHWM under load
	// Targets of issue 22, against the faster of peerSystems in each round.
	targetPeerRPS     = 1.05 // req/s ≥ this × the faster peer's
	targetPeerCPU     = 0.95 // CPU per request ≤ this × that peer's
	targetPeerP99     = 1.1  // p99 ≤ this × that peer's
	baselineSystem    = "haproxy"
	subjectSystem     = "shard-proxy"
	ceilingSystem     = "direct"
	unsupportedPrefix = "unsupported"
)

// row is one measurement: one system on one scenario in one round.
type row struct {
	round    int
	system   string
	scenario string
	rps      float64
	p50us    float64
	p99us    float64
	errors   int
	hwmKiB   int     // peak RSS of the proxy process; 0 when not applicable
	cpuUS    float64 // proxy CPU time per request, µs; 0 when not applicable
	cpuUtil  float64 // share of its core the proxy used during the window
	load1    float64
	note     string // non-empty: not measured, and why
}

func (r row) measured() bool { return r.note == "" }

func main() {
	in := flag.String("in", "", "rows written by run.sh (tab-separated)")
	png := flag.String("png", "", "write the chart here")
	flag.Parse()
	rows, err := readRows(*in)
	if err == nil && len(rows) == 0 {
		err = fmt.Errorf("%s has no rows", *in)
	}
	if err == nil {
		err = writeMarkdown(os.Stdout, rows)
	}
	if err == nil && *png != "" {
		err = writeChart(*png, summarize(rows))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
		os.Exit(1)
	}
}

// readRows parses run.sh's rows:
// round system scenario rps p50_us p99_us errors hwm_kib cpu_us_per_req cpu_util load1 note
func readRows(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fs := strings.Split(text, "\t")
		if len(fs) != 12 {
			return nil, fmt.Errorf("%s:%d: want 12 tab-separated fields, got %d", path, line, len(fs))
		}
		var r row
		var errs [9]error
		r.round, errs[0] = strconv.Atoi(fs[0])
		r.system, r.scenario = fs[1], fs[2]
		r.rps, errs[1] = strconv.ParseFloat(fs[3], 64)
		r.p50us, errs[2] = strconv.ParseFloat(fs[4], 64)
		r.p99us, errs[3] = strconv.ParseFloat(fs[5], 64)
		r.errors, errs[4] = strconv.Atoi(fs[6])
		r.hwmKiB, errs[5] = strconv.Atoi(fs[7])
		r.cpuUS, errs[6] = strconv.ParseFloat(fs[8], 64)
		r.cpuUtil, errs[7] = strconv.ParseFloat(fs[9], 64)
		r.load1, errs[8] = strconv.ParseFloat(fs[10], 64)
		r.note = fs[11]
		for _, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, e)
			}
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

// cell is the summary of one system on one scenario over all rounds.
type cell struct {
	system, scenario  string
	rounds            int
	rps, p50us, p99us float64 // medians
	cpuUS, cpuUtil    float64 // medians
	errors            int     // sum
	hwmKiB            int     // max
	rpsRatio          float64 // median over rounds of req/s ÷ HAProxy's; 0 when unknown
	p99Ratio          float64 // likewise for p99
	cpuRatio          float64 // likewise for CPU per request
	note              string
}

func summarize(rows []row) []cell {
	type id struct {
		round            int
		system, scenario string
	}
	byID := map[id]row{}
	for _, r := range rows {
		byID[id{r.round, r.system, r.scenario}] = r
	}
	var cells []cell
	for _, sc := range scenarioOrder {
		for _, sys := range systemOrder {
			c := cell{system: sys, scenario: sc}
			var rps, p50, p99, cpu, util, rr, pr, cr []float64
			seen := false
			for _, r := range rows {
				if r.system != sys || r.scenario != sc {
					continue
				}
				seen = true
				if !r.measured() {
					c.note = r.note
					continue
				}
				c.rounds++
				rps, p50, p99 = append(rps, r.rps), append(p50, r.p50us), append(p99, r.p99us)
				if r.cpuUS > 0 {
					cpu, util = append(cpu, r.cpuUS), append(util, r.cpuUtil)
				}
				c.errors += r.errors
				c.hwmKiB = max(c.hwmKiB, r.hwmKiB)
				if b, ok := byID[id{r.round, baselineSystem, sc}]; ok && b.measured() && b.rps > 0 && b.p99us > 0 {
					rr, pr = append(rr, r.rps/b.rps), append(pr, r.p99us/b.p99us)
					if r.cpuUS > 0 && b.cpuUS > 0 {
						cr = append(cr, r.cpuUS/b.cpuUS)
					}
				}
			}
			if !seen {
				continue
			}
			c.rps, c.p50us, c.p99us = benchline.Median(rps), benchline.Median(p50), benchline.Median(p99)
			c.rpsRatio, c.p99Ratio, c.cpuRatio = benchline.Median(rr), benchline.Median(pr), benchline.Median(cr)
			c.cpuUS, c.cpuUtil = benchline.Median(cpu), benchline.Median(util)
			cells = append(cells, c)
		}
	}
	return cells
}

func writeMarkdown(w io.Writer, rows []row) error {
	cells := summarize(rows)
	rounds := 0
	for _, r := range rows {
		rounds = max(rounds, r.round)
	}
	b := &strings.Builder{}
	if rounds > 1 {
		fmt.Fprintf(b, "## Summary (median of %d rounds; ratios are per round, then the median)\n\n", rounds)
	} else {
		fmt.Fprintf(b, "## Results\n\n")
	}
	b.WriteString("| system | scenario | req/s | p50 ms | p99 ms | errors | req/s ÷ HAProxy | p99 ÷ HAProxy | CPU µs/req | CPU/req ÷ HAProxy | core used | peak RSS MiB |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range cells {
		if c.rounds == 0 {
			fmt.Fprintf(b, "| %s | %s | n/a | | | | | | | | | |\n", systemTitle[c.system], c.scenario)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %.3f | %.3f | %d | %s | %s | %s | %s | %s | %s |\n",
			systemTitle[c.system], c.scenario, c.rps, c.p50us/1000, c.p99us/1000, c.errors,
			ratio(c.rpsRatio), ratio(c.p99Ratio), micros(c.cpuUS), ratio(c.cpuRatio), percent(c.cpuUtil), mib(c.hwmKiB))
	}
	b.WriteString("\nCPU µs/req is the proxy's own CPU time (user + system) per request; unlike req/s it barely moves when\n" +
		"the machine's other load takes the core away, so it is the steadier comparison. \"core used\" is the share of\n" +
		"its core the proxy got; well below 100% means the load side or the machine held it back.\n")
	notes := map[string]bool{}
	for _, c := range cells {
		if c.note != "" && !notes[c.note] {
			notes[c.note] = true
			fmt.Fprintf(b, "\n- %s, %s: %s", systemTitle[c.system], c.scenario, c.note)
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	writeTargets(b, cells, rows)
	writePeerTargets(b, rows)
	if rounds > 1 {
		writeRounds(b, rows)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ratio(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.2fx", v)
}

func micros(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", v)
}

func percent(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

func mib(kib int) string {
	if kib == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

func find(cells []cell, system, scenario string) (cell, bool) {
	for _, c := range cells {
		if c.system == system && c.scenario == scenario && c.rounds > 0 {
			return c, true
		}
	}
	return cell{}, false
}

// writeTargets checks the targets of issue 5 against the summary.
func writeTargets(b *strings.Builder, cells []cell, rows []row) {
	b.WriteString("\n## Targets (shard-proxy)\n\n| target | measured | met |\n|---|---|---|\n")
	check := func(name, measured string, ok bool) {
		mark := "no"
		if ok {
			mark = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", name, measured, mark)
	}
	hdr, okHdr := find(cells, subjectSystem, "header")
	if okHdr && hdr.rpsRatio > 0 {
		check(fmt.Sprintf("header req/s ≥ %.1fx HAProxy", targetHeaderRPS), ratio(hdr.rpsRatio), hdr.rpsRatio >= targetHeaderRPS)
		check(fmt.Sprintf("header p99 ≤ %.1fx HAProxy", targetHeaderP99), ratio(hdr.p99Ratio), hdr.p99Ratio <= targetHeaderP99)
	}
	if okHdr && hdr.cpuRatio > 0 {
		// Not a target of its own, but what decides the throughput target
		// on a core the proxy has to itself.
		check("(indicator) header CPU/req ≤ 1.0x HAProxy", ratio(hdr.cpuRatio), hdr.cpuRatio <= 1)
	}
	if r := ownRatio(rows, "body", "header"); r > 0 {
		check(fmt.Sprintf("body req/s ≥ %.1fx own header req/s (per round, median)", targetBodyOfOwn), ratio(r), r >= targetBodyOfOwn)
	}
	body, okBody := find(cells, subjectSystem, "body")
	if okBody && okHdr && body.cpuUS > 0 && hdr.cpuUS > 0 {
		r := hdr.cpuUS / body.cpuUS
		check(fmt.Sprintf("(indicator) header CPU/req ÷ body CPU/req ≥ %.1fx", targetBodyOfOwn), ratio(r), r >= targetBodyOfOwn)
	}
	errs, hwm, any := 0, 0, false
	for _, c := range cells {
		if c.system == subjectSystem && c.rounds > 0 {
			errs, hwm, any = errs+c.errors, max(hwm, c.hwmKiB), true
		}
	}
	if any {
		check("0 errors", strconv.Itoa(errs), errs == 0)
		check(fmt.Sprintf("peak RSS ≤ %.0f MiB", targetRSSMiB), mib(hwm)+" MiB", float64(hwm)/1024 <= targetRSSMiB)
	}
}

// peerSystems are the peers issue 22 compares shard-proxy with.
var peerSystems = []string{"nginx", "haproxy"}

// peerRatios is, for one scenario, the median over rounds of shard-proxy's
// req/s, CPU per request and p99 over those of the faster peer in the same
// round (each 0 when unknown), and how many rounds had both.
func peerRatios(rows []row, scenario string) (rps, cpu, p99 float64, rounds int) {
	best := map[int]row{}
	for _, r := range rows {
		if r.scenario == scenario && r.measured() && r.rps > 0 && slices.Contains(peerSystems, r.system) && r.rps > best[r.round].rps {
			best[r.round] = r
		}
	}
	var rr, cr, pr []float64
	for _, r := range rows {
		b, ok := best[r.round]
		if r.system != subjectSystem || r.scenario != scenario || !r.measured() || !ok {
			continue
		}
		rr = append(rr, r.rps/b.rps)
		if r.cpuUS > 0 && b.cpuUS > 0 {
			cr = append(cr, r.cpuUS/b.cpuUS)
		}
		if b.p99us > 0 {
			pr = append(pr, r.p99us/b.p99us)
		}
	}
	return benchline.Median(rr), benchline.Median(cr), benchline.Median(pr), len(rr)
}

// writePeerTargets checks the HTTP/1.1 targets of issue 22: per key, against
// the faster of nginx and HAProxy in each round.
func writePeerTargets(b *strings.Builder, rows []row) {
	b.WriteString("\n## Targets of issue 22 (shard-proxy ÷ the faster of nginx and HAProxy in the same round, median)\n\n")
	b.WriteString("| key | rounds | req/s (≥ 1.05x) | CPU/req (≤ 0.95x) | p99 (≤ 1.1x) | all met |\n|---|---:|---:|---:|---:|---|\n")
	for _, sc := range scenarioOrder {
		rps, cpu, p99, n := peerRatios(rows, sc)
		if n == 0 {
			continue
		}
		met := "no"
		if rps >= targetPeerRPS && cpu > 0 && cpu <= targetPeerCPU && p99 <= targetPeerP99 {
			met = "yes"
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |\n", sc, n, ratio(rps), ratio(cpu), ratio(p99), met)
	}
}

// ownRatio is the median over rounds of shard-proxy's req/s on scenario a
// over its req/s on scenario b in the same round; 0 when unknown.
func ownRatio(rows []row, a, b string) float64 {
	rps := map[string]float64{}
	for _, r := range rows {
		if r.system == subjectSystem && r.measured() {
			rps[fmt.Sprint(r.round, r.scenario)] = r.rps
		}
	}
	var ratios []float64
	for _, r := range rows {
		if r.system == subjectSystem && r.scenario == a && r.measured() {
			if d := rps[fmt.Sprint(r.round, b)]; d > 0 {
				ratios = append(ratios, r.rps/d)
			}
		}
	}
	return benchline.Median(ratios)
}

// writeRounds lists every measurement, so the spread between rounds shows.
func writeRounds(b *strings.Builder, rows []row) {
	b.WriteString("\n## Every round\n\n| round | system | scenario | req/s | p50 ms | p99 ms | errors | req/s ÷ HAProxy | CPU µs/req | core used | load avg (1 min) |\n")
	b.WriteString("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	base := map[string]float64{}
	for _, r := range rows {
		if r.system == baselineSystem && r.measured() {
			base[fmt.Sprint(r.round, r.scenario)] = r.rps
		}
	}
	for _, r := range rows {
		if !r.measured() {
			continue
		}
		rr := ""
		if v := base[fmt.Sprint(r.round, r.scenario)]; v > 0 {
			rr = ratio(r.rps / v)
		}
		fmt.Fprintf(b, "| %d | %s | %s | %.0f | %.3f | %.3f | %d | %s | %s | %s | %.1f |\n",
			r.round, systemTitle[r.system], r.scenario, r.rps, r.p50us/1000, r.p99us/1000, r.errors, rr,
			micros(r.cpuUS), percent(r.cpuUtil), r.load1)
	}
}
