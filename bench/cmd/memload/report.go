package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

// cmdReport turns the BENCH lines that run.sh collected into the markdown
// tables of bench/results/memory.md: one table per test, one row per
// system, ratios against HAProxy's row of the same run.
func cmdReport(args []string) error {
	return benchline.Report(args, lineKeys, markdown)
}

// lineKeys: the keys every BENCH line has.
var lineKeys = []string{"system", "test"}

// rec is one parsed line.
type rec = benchline.Rec

// parseLines reads "BENCH k=v k=\"quoted v\" ..." lines; others are ignored.
func parseLines(rd io.Reader) ([]rec, error) { return benchline.Parse(rd, lineKeys...) }

var (
	memSystemOrder = []string{"shard-proxy", "candidate", "haproxy", "nginx"}
	memSystemTitle = map[string]string{
		"shard-proxy": "shard-proxy", "candidate": "shard-proxy (candidate)", "haproxy": "HAProxy", "nginx": "nginx",
	}
)

func title(sys string) string {
	if t, ok := memSystemTitle[sys]; ok {
		return t
	}
	return sys
}

// table collects one test's rows: the last line per system (a rerun
// replaces an earlier one), in the usual system order.
func table(recs []rec, test string) (rows []rec, base rec) {
	last := map[string]rec{}
	var order []string
	for _, r := range recs {
		if r["test"] != test {
			continue
		}
		if _, ok := last[r["system"]]; !ok {
			order = append(order, r["system"])
		}
		last[r["system"]] = r
	}
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })
	for _, s := range order {
		rows = append(rows, last[s])
	}
	if b, ok := last[baselineSystem]; ok && !b.Failed() {
		base = b
	}
	return rows, base
}

func rank(sys string) int {
	if i := slices.Index(memSystemOrder, sys); i >= 0 {
		return i
	}
	return len(memSystemOrder)
}

// against is r[k] ÷ base[k] as "1.23x", empty when either is unknown or
// the base is zero.
func against(r, base rec, k string) string {
	if base == nil || r.Failed() {
		return ""
	}
	v, ok1 := r.Num(k)
	b, ok2 := base.Num(k)
	if !ok1 || !ok2 || b == 0 {
		return ""
	}
	q := v / b
	switch {
	case q >= 100:
		return fmt.Sprintf("%.0fx", q)
	case q >= 10:
		return fmt.Sprintf("%.1fx", q)
	}
	return fmt.Sprintf("%.2fx", q)
}

func kibMiB(r rec, k string) string {
	v, ok := r.Num(k)
	if !ok || v == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", v/1024)
}

func fixed(r rec, k string, prec int) string {
	v, ok := r.Num(k)
	if !ok {
		return ""
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func yesNo(r rec, k string) string {
	switch r[k] {
	case "1":
		return "yes"
	case "0":
		return "**no**"
	}
	return ""
}

// outcome is a cell for what the client got: the status, or the error.
func outcome(r rec) string {
	s := r["status"]
	if s == "0" || s == "" {
		s = ""
	}
	if e := r["err"]; e != "" {
		if s != "" {
			s += ", "
		}
		s += e
	}
	return s
}

// died marks a row whose proxy did not survive the test.
func died(r rec) string {
	switch {
	case r["guard_killed"] == "1":
		return " (killed by the RSS guard)"
	case r["alive"] == "0":
		return " (proxy died)"
	}
	return ""
}

type notes struct {
	list []string
	seen map[string]bool
}

func (n *notes) add(s string) {
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	if !n.seen[s] {
		n.seen[s] = true
		n.list = append(n.list, s)
	}
}

func markdown(recs []rec) string {
	b := &strings.Builder{}
	var ns notes
	failedRow := func(r rec, cols int) bool {
		if !r.Failed() {
			return false
		}
		fmt.Fprintf(b, "| %s | n/a%s |\n", title(r["system"]), strings.Repeat(" |", cols-2))
		ns.add(fmt.Sprintf("%s, %s: %s", title(r["system"]), r["test"], r["note"]))
		return true
	}
	noteDeath := func(r rec) {
		d := strings.TrimSpace(strings.Trim(died(r), " ()"))
		if d == "" {
			return
		}
		if r["exit_status"] != "" {
			d += fmt.Sprintf(", exit status %s", r["exit_status"])
		}
		if w := r["last_words"]; w != "" {
			d += fmt.Sprintf(", its last words: `%s`", w)
		}
		ns.add(fmt.Sprintf("%s, %s: %s; its peak RSS is the last reading before that", title(r["system"]), r["test"], d))
	}
	has := func(test string) bool {
		return slices.ContainsFunc(recs, func(r rec) bool { return r["test"] == test })
	}

	if has("stream") || has("sse") {
		b.WriteString("## Streaming: time to first and last body byte\n\n")
		b.WriteString("The shard sends 10 pieces 200 ms apart. A proxy that streams passes the first at once (first byte ≈ 0)\n" +
			"and the body arrives in 10 bursts; one that buffers holds it all until the last (first byte ≈ 1.8 s, 1 burst).\n" +
			"Between streaming proxies, first-byte times of a few ms differ by noise, and so does their ratio.\n\n")
		b.WriteString("| system | body | status | framing to client | headers ms | first byte ms | last byte ms | bursts | first byte ÷ HAProxy |\n")
		b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|\n")
		for _, test := range []string{"stream", "sse"} {
			rows, base := table(recs, test)
			for _, r := range rows {
				if failedRow(r, 9) {
					continue
				}
				body := "chunked"
				if test == "sse" {
					body = "SSE (text/event-stream)"
				}
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), body, outcome(r)+died(r),
					r["framing"], fixed(r, "headers_ms", 1), fixed(r, "ttfb_ms", 1), fixed(r, "ttlb_ms", 1), r["bursts"],
					against(r, base, "ttfb_ms"))
				noteDeath(r)
			}
		}
		b.WriteString("\n")
	}

	if has("download") {
		rows, base := table(recs, "download")
		fmt.Fprintf(b, "## %s download, one client\n\n", sizeOf(rows, "bytes"))
		b.WriteString("| system | status | MiB/s | seconds | peak RSS MiB | MiB/s ÷ HAProxy | peak RSS ÷ HAProxy |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 7) {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), statusesCell(r)+died(r),
				okOnly(r, fixed(r, "mib_s", 0)), fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"),
				okOnly(r, against(r, base, "mib_s")), against(r, base, "hwm_kib"))
			noteDeath(r)
		}
		b.WriteString("\n")
	}

	if has("download50") {
		rows, base := table(recs, "download50")
		fmt.Fprintf(b, "## %s concurrent %s downloads\n\n", first(rows, "clients"), sizeOf(rows, "bytes"))
		fmt.Fprintf(b, "RSS after: VmRSS %s s after the last client finished (what the proxy keeps).\n\n", firstFixed(rows, "after_s", 0))
		b.WriteString("| system | complete | answers | MiB/s (all) | seconds | peak RSS MiB | RSS after MiB | peak RSS ÷ HAProxy | RSS after ÷ HAProxy |\n")
		b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 9) {
				continue
			}
			fmt.Fprintf(b, "| %s | %s/%s | %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), r["ok"], r["clients"],
				statusesCell(r)+died(r), okOnly(r, fixed(r, "mib_s", 0)), fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"),
				kibMiB(r, "rss_after_kib"), against(r, base, "hwm_kib"), against(r, base, "rss_after_kib"))
			noteDeath(r)
		}
		b.WriteString("\n")
	}

	if has("upload") {
		rows, base := table(recs, "upload")
		fmt.Fprintf(b, "## %s upload (POST with Content-Length)\n\n", sizeOf(rows, "bytes"))
		b.WriteString("| system | status | shard received | MiB/s | seconds | peak RSS MiB | MiB/s ÷ HAProxy | peak RSS ÷ HAProxy |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 8) {
				continue
			}
			recv := r["received"]
			if recv == "-1" {
				recv = ""
			}
			ok := r["status"] == "200" && r["err"] == "" && r["received"] == r["bytes"]
			mibs, ratio := "", ""
			if ok {
				mibs, ratio = fixed(r, "mib_s", 0), against(r, base, "mib_s")
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), outcome(r)+died(r), recv,
				mibs, fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"), ratio, against(r, base, "hwm_kib"))
			noteDeath(r)
		}
		b.WriteString("\n")
	}

	if has("slowupload") {
		rows, base := table(recs, "slowupload")
		fmt.Fprintf(b, "## %s slow uploads of %s, and a fast client\n\n", first(rows, "clients"), sizeOf(rows, "bytes"))
		fmt.Fprintf(b, "Each uploader sends the head with Content-Length, then %s every %s ms (the pace alone takes %s s).\n"+
			"Meanwhile one client sends small GETs back to back on one keep-alive connection through the same proxy.\n\n",
			sizeOf(rows, "chunk"), firstFixed(rows, "gap_ms", 0), paceSecs(rows))
		b.WriteString("| system | uploads complete | answers | upload p50 s | peak RSS MiB | fast GETs | fast errors | fast p50 ms | fast p99 ms | peak RSS ÷ HAProxy | fast p99 ÷ HAProxy |\n")
		b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 11) {
				continue
			}
			fmt.Fprintf(b, "| %s | %s/%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), r["ok"], r["clients"],
				statusesCell(r)+died(r), fixed(r, "upload_p50_s", 2), kibMiB(r, "hwm_kib"), r["fast_n"], r["fast_err"],
				fixed(r, "fast_p50_ms", 3), fixed(r, "fast_p99_ms", 3), against(r, base, "hwm_kib"), against(r, base, "fast_p99_ms"))
			noteDeath(r)
			if e := r["fast_first_err"]; e != "" {
				ns.add(fmt.Sprintf("%s, slowupload: first error of the fast client: %s", title(r["system"]), e))
			}
			if pace := paceOf(r); pace > 0 && r.F("upload_p50_s") > 1.5*pace {
				ns.add(fmt.Sprintf("%s, slowupload: the uploads took %.1f s (median) where their pace takes %.1f s: "+
					"the proxy or the load CPU (which also runs the shards) could not keep up, and the fast client's "+
					"latency shows that as much as the proxy", title(r["system"]), r.F("upload_p50_s"), pace))
			}
		}
		b.WriteString("\n")
	}

	if has("idle") {
		rows, base := table(recs, "idle")
		b.WriteString("## Idle keep-alive connections\n\n")
		b.WriteString("Each connection made one small request and stays open. KiB per connection = (RSS after − RSS before) ÷ connections held;\n" +
			"still open: connections the proxy had not closed when checked after the measurement.\n\n")
		b.WriteString("| system | connections | held | still open | RSS before MiB | RSS after MiB | KiB per connection | proxy fds | KiB/conn ÷ HAProxy |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 9) {
				continue
			}
			perConn := ""
			if v, ok := r.Num("per_conn_bytes"); ok {
				perConn = fmt.Sprintf("%.1f", v/1024)
			}
			fmt.Fprintf(b, "| %s | %s | %s%s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), r["conns"], r["held"], died(r),
				r["still_open"], kibMiB(r, "rss_before_kib"), kibMiB(r, "rss_after_kib"), perConn, r["fds_after"],
				against(r, base, "per_conn_bytes"))
			noteDeath(r)
			if e := r["err"]; e != "" {
				ns.add(fmt.Sprintf("%s, idle: %s connections failed, first error: %s", title(r["system"]), r["failed"], e))
			}
		}
		b.WriteString("\n")
	}

	if has("hugecl") {
		rows, base := table(recs, "hugecl")
		fmt.Fprintf(b, "## A shard declaring Content-Length: %s (%s)\n\n", first(rows, "declared"), sizeOf(rows, "declared"))
		b.WriteString("The shard sends the head and a few bytes, stalls, then closes. Survives: the process is alive afterwards\n" +
			"and the next request gets 200.\n\n")
		b.WriteString("| system | client got | Content-Length to client | bytes received | client saw | seconds | proxy alive | next request | peak RSS MiB | peak RSS ÷ HAProxy |\n")
		b.WriteString("|---|---|---:|---:|---|---:|---|---|---:|---:|\n")
		for _, r := range rows {
			if failedRow(r, 10) {
				continue
			}
			status := r["status"]
			if status == "0" {
				status = "no answer"
			}
			cl := r["content_length"]
			if cl == "-1" {
				cl = ""
			}
			next := r["next_status"]
			if next == "0" {
				next = ""
			}
			if e := r["next_err"]; e != "" {
				next = strings.TrimPrefix(next+", "+e, ", ")
			}
			clientSaw := r["client_err"]
			if clientSaw == "" {
				clientSaw = "complete body"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", title(r["system"]), status, cl, r["bytes"],
				clientSaw, fixed(r, "seconds", 2), yesNo(r, "alive")+guardNote(r), next, kibMiB(r, "hwm_kib"),
				against(r, base, "hwm_kib"))
			noteDeath(r)
		}
		b.WriteString("\n")
	}

	if len(ns.list) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range ns.list {
			b.WriteString("- " + n + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func guardNote(r rec) string {
	if r["guard_killed"] == "1" {
		return " (killed by the RSS guard)"
	}
	return ""
}

// okOnly blanks a throughput cell of a download that did not complete.
func okOnly(r rec, s string) string {
	if r["ok"] != r["clients"] {
		return ""
	}
	return s
}

// statusesCell: "200:50", or with errors "200:48,error:2 (read: connection reset by peer)".
func statusesCell(r rec) string {
	s := r["statuses"]
	if e := r["err"]; e != "" {
		s += " (" + e + ")"
	}
	return s
}

func firstFixed(rows []rec, k string, prec int) string {
	v, err := strconv.ParseFloat(first(rows, k), 64)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func first(rows []rec, k string) string {
	for _, r := range rows {
		if v := r[k]; v != "" {
			return v
		}
	}
	return "?"
}

// sizeOf names the byte count of a test: "64 MiB".
func sizeOf(rows []rec, k string) string {
	v, err := strconv.ParseInt(first(rows, k), 10, 64)
	if err != nil {
		return "?"
	}
	switch {
	case v >= 1<<30 && v%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", v>>30)
	case v >= 1<<20 && v%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", v>>20)
	case v >= 1<<10 && v%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", v>>10)
	}
	return fmt.Sprintf("%d bytes", v)
}

// paceSecs: how long the slow uploads take at their pace alone.
func paceSecs(rows []rec) string {
	for _, r := range rows {
		if p := paceOf(r); p > 0 {
			return fmt.Sprintf("%.1f", p)
		}
	}
	return "?"
}

// paceOf: seconds one slow upload of r takes at its pace (0: unknown).
func paceOf(r rec) float64 {
	size, chunk, gap := r.F("bytes"), r.F("chunk"), r.F("gap_ms")
	if r.Failed() || chunk <= 0 {
		return 0
	}
	chunks := float64(int64((size + chunk - 1) / chunk))
	return (chunks - 1) * gap / 1000
}

const baselineSystem = "haproxy"
