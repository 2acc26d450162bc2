package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

var (
	systemOrder   = []string{"shard-proxy", "shard-proxy-log", "shard-proxy-trace1", "shard-proxy-trace100", "candidate", "haproxy", "nginx", "direct"}
	scenarioOrder = []string{"grpc", "h2"}
	systemTitle   = map[string]string{
		"shard-proxy": "shard-proxy", "candidate": "shard-proxy (candidate)", "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct (ceiling)",
		"shard-proxy-log": "shard-proxy, 100% access log", "shard-proxy-trace1": "shard-proxy, tracing 1%", "shard-proxy-trace100": "shard-proxy, tracing 100%",
	}
	scenarioTitle = map[string]string{
		"grpc": "gRPC unary calls (grpc.testing.TestService/UnaryCall, key in x-shard-key metadata)",
		"h2":   "Plain HTTP/2 GETs (h2load, h2c, GET /accounts/<key>)",
	}
	scenarioNote = map[string]string{
		"h2": "A call here is one GET; p50 and p99 are from h2load's per-request log.",
	}
)

func title(m map[string]string, k string) string {
	if t, ok := m[k]; ok {
		return t
	}
	return k
}

// ordered: the known names in their order, then the others as they come.
func ordered(order []string, have []string) []string {
	var out []string
	for _, k := range order {
		if slices.Contains(have, k) {
			out = append(out, k)
		}
	}
	for _, k := range have {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// cell is one system on one scenario over all rounds.
type cell struct {
	system         string
	rounds         int
	rps, p50, p99  float64 // medians
	cpu, util      float64 // medians; 0: not measured (direct)
	errors         int64   // sum
	hwmKiB         float64 // max
	vsHA, vsBest   ratios
	notes, errs    []string
	callers, conns string
}

// ratios are medians over rounds of this system's figure ÷ the reference's.
type ratios struct{ rps, p99, cpu float64 }

// best of HAProxy and nginx in one round, per figure: the higher calls/s,
// the lower p99, the lower CPU per call, of those measured.
func bestOf(rs ...rec) (rps, p99, cpu float64) {
	for _, r := range rs {
		if r == nil || r.Failed() || r.F("rps") <= 0 {
			continue
		}
		rps = max(rps, r.F("rps"))
		if v := r.F("p99_us"); v > 0 && (p99 == 0 || v < p99) {
			p99 = v
		}
		if v := r.F("cpu_us"); v > 0 && (cpu == 0 || v < cpu) {
			cpu = v
		}
	}
	return
}

func summarize(recs []rec, scenario string) []cell {
	type key struct {
		round  int
		system string
	}
	byKey := map[key]rec{}
	var systems []string
	for _, r := range recs {
		if r["scenario"] != scenario {
			continue
		}
		byKey[key{r.Int("round"), r["system"]}] = r
		if !slices.Contains(systems, r["system"]) {
			systems = append(systems, r["system"])
		}
	}
	var cells []cell
	for _, sys := range ordered(systemOrder, systems) {
		c := cell{system: sys}
		var rps, p50, p99, cpu, util []float64
		var haR, haP, haC, bR, bP, bC []float64
		for _, r := range recs {
			if r["scenario"] != scenario || r["system"] != sys {
				continue
			}
			if r.Failed() {
				c.notes = append(c.notes, fmt.Sprintf("round %s: %s", r["round"], r["note"]))
				continue
			}
			c.rounds++
			c.callers, c.conns = r["callers"], r["conns"]
			rps, p50, p99 = append(rps, r.F("rps")), append(p50, r.F("p50_us")), append(p99, r.F("p99_us"))
			if r.F("cpu_us") > 0 {
				cpu, util = append(cpu, r.F("cpu_us")), append(util, r.F("cpu_util"))
			}
			c.errors += int64(r.F("errors"))
			c.hwmKiB = max(c.hwmKiB, r.F("hwm_kib"))
			if e := r["first_error"]; e != "" {
				msg := e
				if codes := r["error_codes"]; codes != "" {
					msg = codes + "; first: " + e
				}
				c.errs = append(c.errs, fmt.Sprintf("round %s: %s errors (%s)", r["round"], r["errors"], msg))
			}
			ha, ng := byKey[key{r.Int("round"), "haproxy"}], byKey[key{r.Int("round"), "nginx"}]
			if ha != nil && !ha.Failed() {
				ratio(&haR, r.F("rps"), ha.F("rps"))
				ratio(&haP, r.F("p99_us"), ha.F("p99_us"))
				ratio(&haC, r.F("cpu_us"), ha.F("cpu_us"))
			}
			br, bp, bc := bestOf(ha, ng)
			ratio(&bR, r.F("rps"), br)
			ratio(&bP, r.F("p99_us"), bp)
			ratio(&bC, r.F("cpu_us"), bc)
		}
		c.rps, c.p50, c.p99 = benchline.Median(rps), benchline.Median(p50), benchline.Median(p99)
		c.cpu, c.util = benchline.Median(cpu), benchline.Median(util)
		c.vsHA = ratios{benchline.Median(haR), benchline.Median(haP), benchline.Median(haC)}
		c.vsBest = ratios{benchline.Median(bR), benchline.Median(bP), benchline.Median(bC)}
		cells = append(cells, c)
	}
	return cells
}

func ratio(dst *[]float64, v, ref float64) {
	if v > 0 && ref > 0 {
		*dst = append(*dst, v/ref)
	}
}

func ms(us float64) string { return strconv.FormatFloat(us/1000, 'f', 3, 64) }

func x(v float64) string {
	if v == 0 {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

func orDash(v float64, format string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

// markdown is grpc.md: per scenario, the summary table, its notes and,
// with more than one round, every round.
func markdown(recs []rec) string {
	var b strings.Builder
	var scenarios []string
	rounds := 0
	for _, r := range recs {
		if !slices.Contains(scenarios, r["scenario"]) {
			scenarios = append(scenarios, r["scenario"])
		}
		rounds = max(rounds, r.Int("round"))
	}
	for _, sc := range ordered(scenarioOrder, scenarios) {
		fmt.Fprintf(&b, "## %s\n\n", title(scenarioTitle, sc))
		if n := scenarioNote[sc]; n != "" {
			fmt.Fprintf(&b, "%s\n\n", n)
		}
		if rounds > 1 {
			fmt.Fprintf(&b, "Medians over %d rounds; each ratio is taken within a round, then the median.\n\n", rounds)
		}
		writeSummary(&b, summarize(recs, sc))
		writeVariants(&b, recs, sc)
		if rounds > 1 {
			writeRounds(&b, recs, sc, rounds)
		}
	}
	return b.String()
}

// writeSummary writes the table of one scenario's cells, one row per
// system, then the failed rounds and errors as a list.
func writeSummary(b *strings.Builder, cells []cell) {
	b.WriteString("| system | calls/s | p50 ms | p99 ms | errors | CPU µs/call | core used | calls/s ÷ HAProxy | p99 ÷ HAProxy | CPU ÷ HAProxy | calls/s ÷ best of HAProxy, nginx | p99 ÷ best | CPU ÷ best | peak RSS MiB |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	for _, c := range cells {
		name := title(systemTitle, c.system)
		if c.rounds == 0 {
			fmt.Fprintf(b, "| %s | n/a | | | | | | | | | | | | |\n", name)
		} else {
			fmt.Fprintf(b, "| %s | %.0f | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				name, c.rps, ms(c.p50), ms(c.p99), c.errors,
				orDash(c.cpu, "%.1f"), orDash(c.util*100, "%.0f%%"),
				x(c.vsHA.rps), x(c.vsHA.p99), x(c.vsHA.cpu),
				x(c.vsBest.rps), x(c.vsBest.p99), x(c.vsBest.cpu),
				orDash(c.hwmKiB/1024, "%.1f"))
		}
		for _, n := range c.notes {
			notes = append(notes, fmt.Sprintf("%s: %s", name, n))
		}
		for _, e := range c.errs {
			notes = append(notes, fmt.Sprintf("%s: %s", name, e))
		}
	}
	b.WriteString("\n")
	if len(notes) > 0 {
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
}

// writeRounds writes the table of every round of one scenario, round by
// round, the systems of each in their order.
func writeRounds(b *strings.Builder, recs []rec, sc string, rounds int) {
	b.WriteString("Every round:\n\n| round | system | calls/s | p50 ms | p99 ms | errors | CPU µs/call | core used | load (1 min) |\n|--:|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for round := 1; round <= rounds; round++ {
		for _, sys := range ordered(systemOrder, systemsOf(recs, sc)) {
			for _, r := range recs {
				if r["scenario"] != sc || r["system"] != sys || r.Int("round") != round {
					continue
				}
				if r.Failed() {
					fmt.Fprintf(b, "| %d | %s | n/a | | | | | | |\n", round, title(systemTitle, sys))
					continue
				}
				fmt.Fprintf(b, "| %d | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", round, title(systemTitle, sys),
					r.F("rps"), ms(r.F("p50_us")), ms(r.F("p99_us")), r["errors"],
					orDash(r.F("cpu_us"), "%.1f"), orDash(r.F("cpu_util")*100, "%.0f%%"), r["load1"])
			}
		}
	}
	b.WriteString("\n")
}

func systemsOf(recs []rec, scenario string) []string {
	var out []string
	for _, r := range recs {
		if r["scenario"] == scenario && !slices.Contains(out, r["system"]) {
			out = append(out, r["system"])
		}
	}
	return out
}

// variants are the shard-proxy systems with the access log or tracing on,
// measured against "shard-proxy" (both off).
var variants = []string{"shard-proxy-log", "shard-proxy-trace1", "shard-proxy-trace100"}

// writeVariants writes, when the scenario has any of the variants and
// shard-proxy, each variant's calls/s and CPU per call ÷ shard-proxy's,
// taken within a round, with their median and every round's.
func writeVariants(b *strings.Builder, recs []rec, sc string) {
	type pair struct{ rps, cpu []float64 }
	off := map[int]rec{}
	got := map[string]*pair{}
	for _, r := range recs {
		if r["scenario"] == sc && r["system"] == "shard-proxy" && !r.Failed() {
			off[r.Int("round")] = r
		}
	}
	for _, r := range recs {
		o := off[r.Int("round")]
		if r["scenario"] != sc || !slices.Contains(variants, r["system"]) || r.Failed() || o == nil {
			continue
		}
		p := got[r["system"]]
		if p == nil {
			p = &pair{}
			got[r["system"]] = p
		}
		ratio(&p.rps, r.F("rps"), o.F("rps"))
		ratio(&p.cpu, r.F("cpu_us"), o.F("cpu_us"))
	}
	if len(got) == 0 {
		return
	}
	b.WriteString("Against shard-proxy with the access log and tracing off, in the same round (median; every round):\n\n")
	b.WriteString("| system | calls/s ÷ off | CPU per call ÷ off | calls/s ÷ off, by round | CPU ÷ off, by round |\n|---|--:|--:|---|---|\n")
	for _, sys := range variants {
		p := got[sys]
		if p == nil {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", title(systemTitle, sys),
			x(benchline.Median(p.rps)), x(benchline.Median(p.cpu)), xs(p.rps), xs(p.cpu))
	}
	b.WriteString("\n")
}

// xs is each ratio, in order, as "0.97 1.02".
func xs(v []float64) string {
	out := make([]string, len(v))
	for i, f := range v {
		out[i] = strconv.FormatFloat(f, 'f', 2, 64)
	}
	return strings.Join(out, " ")
}
