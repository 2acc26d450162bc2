package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

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

// against is r[k] ÷ base[k] (or base[baseKey]) as "1.23x", empty when
// either is unknown or the base is zero.
func against(r, base rec, k string, baseKey ...string) string {
	if base == nil || r.Failed() {
		return ""
	}
	bk := k
	if len(baseKey) > 0 {
		bk = baseKey[0]
	}
	v, ok1 := r.Num(k)
	b, ok2 := base.Num(bk)
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
	m := &mdReport{b: &strings.Builder{}, recs: recs}
	if m.has("stream") || m.has("sse") {
		m.write(m.stream)
	}
	sections := []struct {
		test  string
		write func()
	}{
		{"download", m.download}, {"download50", m.download50}, {"upload", m.upload},
		{"slowupload", m.slowUpload}, {"idle", m.idle}, {"h2idle", m.h2Idle}, {"hugecl", m.hugeCL}, {"hung", m.hung},
		{"h2stall", m.h2Stall}, {"slowshard", func() { m.stallShard("slowshard") }},
		{"blackhole", func() { m.stallShard("blackhole") }},
	}
	for _, s := range sections {
		if m.has(s.test) {
			m.write(s.write)
		}
	}
	if len(m.ns.list) > 0 {
		m.b.WriteString("## Notes\n\n")
		for _, n := range m.ns.list {
			m.b.WriteString("- " + n + "\n")
		}
		m.b.WriteString("\n")
	}
	return m.b.String()
}

// mdReport is memory.md being written: the tables, and the notes that
// go below them.
type mdReport struct {
	b    *strings.Builder
	ns   notes
	recs []rec
}

func (m *mdReport) has(test string) bool {
	return slices.ContainsFunc(m.recs, func(r rec) bool { return r["test"] == test })
}

// write writes a section, then the blank line that ends it.
func (m *mdReport) write(section func()) {
	section()
	m.b.WriteString("\n")
}

// rows writes a table: the header and alignment lines, then one row per
// system of each test in turn: "n/a" for a failed test (its note among the
// notes), else the cells row makes of it and base (HAProxy's line), with
// a note if the proxy died; then, if not nil, whatever more then notes.
func (m *mdReport) rows(header, align string, tests []string, row func(r, base rec) []string, then func(r rec)) {
	m.b.WriteString(header + "\n" + align + "\n")
	cols := strings.Count(header, "|") - 1
	for _, test := range tests {
		rows, base := table(m.recs, test)
		for _, r := range rows {
			if r.Failed() {
				fmt.Fprintf(m.b, "| %s | n/a%s |\n", title(r["system"]), strings.Repeat(" |", cols-2))
				m.ns.add(fmt.Sprintf("%s, %s: %s", title(r["system"]), r["test"], r["note"]))
				continue
			}
			m.b.WriteString("| " + strings.Join(row(r, base), " | ") + " |\n")
			m.noteDeath(r)
			if then != nil {
				then(r)
			}
		}
	}
}

func (m *mdReport) noteDeath(r rec) {
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
	m.ns.add(fmt.Sprintf("%s, %s: %s; its peak RSS is the last reading before that", title(r["system"]), r["test"], d))
}

// rowsOf: the rows of test, for the figures a section's heading quotes.
func (m *mdReport) rowsOf(test string) []rec {
	rows, _ := table(m.recs, test)
	return rows
}

func (m *mdReport) stream() {
	m.b.WriteString("## Streaming: time to first and last body byte\n\n")
	m.b.WriteString("The shard sends 10 pieces 200 ms apart. A proxy that streams passes the first at once (first byte ≈ 0)\n" +
		"and the body arrives in 10 bursts; one that buffers holds it all until the last (first byte ≈ 1.8 s, 1 burst).\n" +
		"Between streaming proxies, first-byte times of a few ms differ by noise, and so does their ratio.\n\n")
	m.rows("| system | body | status | framing to client | headers ms | first byte ms | last byte ms | bursts | first byte ÷ HAProxy |",
		"|---|---|---|---|---:|---:|---:|---:|---:|", []string{"stream", "sse"},
		func(r, base rec) []string {
			body := "chunked"
			if r["test"] == "sse" {
				body = "SSE (text/event-stream)"
			}
			return []string{title(r["system"]), body, outcome(r) + died(r),
				r["framing"], fixed(r, "headers_ms", 1), fixed(r, "ttfb_ms", 1), fixed(r, "ttlb_ms", 1), r["bursts"],
				against(r, base, "ttfb_ms")}
		}, nil)
}

func (m *mdReport) download() {
	fmt.Fprintf(m.b, "## %s download, one client\n\n", sizeOf(m.rowsOf("download"), "bytes"))
	m.rows("| system | status | MiB/s | seconds | peak RSS MiB | MiB/s ÷ HAProxy | peak RSS ÷ HAProxy |",
		"|---|---|---:|---:|---:|---:|---:|", []string{"download"},
		func(r, base rec) []string {
			return []string{title(r["system"]), statusesCell(r) + died(r),
				okOnly(r, fixed(r, "mib_s", 0)), fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"),
				okOnly(r, against(r, base, "mib_s")), against(r, base, "hwm_kib")}
		}, nil)
}

func (m *mdReport) download50() {
	rows := m.rowsOf("download50")
	fmt.Fprintf(m.b, "## %s concurrent %s downloads\n\n", first(rows, "clients"), sizeOf(rows, "bytes"))
	fmt.Fprintf(m.b, "RSS after: VmRSS %s s after the last client finished (what the proxy keeps).\n\n", firstFixed(rows, "after_s", 0))
	m.rows("| system | complete | answers | MiB/s (all) | seconds | peak RSS MiB | RSS after MiB | peak RSS ÷ HAProxy | RSS after ÷ HAProxy |",
		"|---|---:|---|---:|---:|---:|---:|---:|---:|", []string{"download50"},
		func(r, base rec) []string {
			return []string{title(r["system"]), r["ok"] + "/" + r["clients"],
				statusesCell(r) + died(r), okOnly(r, fixed(r, "mib_s", 0)), fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"),
				kibMiB(r, "rss_after_kib"), against(r, base, "hwm_kib"), against(r, base, "rss_after_kib")}
		}, nil)
}

func (m *mdReport) upload() {
	fmt.Fprintf(m.b, "## %s upload (POST with Content-Length)\n\n", sizeOf(m.rowsOf("upload"), "bytes"))
	m.rows("| system | status | shard received | MiB/s | seconds | peak RSS MiB | MiB/s ÷ HAProxy | peak RSS ÷ HAProxy |",
		"|---|---|---:|---:|---:|---:|---:|---:|", []string{"upload"},
		func(r, base rec) []string {
			recv := r["received"]
			if recv == "-1" {
				recv = ""
			}
			ok := r["status"] == "200" && r["err"] == "" && r["received"] == r["bytes"]
			mibs, ratio := "", ""
			if ok {
				mibs, ratio = fixed(r, "mib_s", 0), against(r, base, "mib_s")
			}
			return []string{title(r["system"]), outcome(r) + died(r), recv,
				mibs, fixed(r, "seconds", 2), kibMiB(r, "hwm_kib"), ratio, against(r, base, "hwm_kib")}
		}, nil)
}

func (m *mdReport) slowUpload() {
	rows := m.rowsOf("slowupload")
	fmt.Fprintf(m.b, "## %s slow uploads of %s, and a fast client\n\n", first(rows, "clients"), sizeOf(rows, "bytes"))
	fmt.Fprintf(m.b, "Each uploader sends the head with Content-Length, then %s every %s ms (the pace alone takes %s s).\n"+
		"Meanwhile one client sends small GETs back to back on one keep-alive connection through the same proxy.\n\n",
		sizeOf(rows, "chunk"), firstFixed(rows, "gap_ms", 0), paceSecs(rows))
	m.rows("| system | uploads complete | answers | upload p50 s | peak RSS MiB | fast GETs | fast errors | fast p50 ms | fast p99 ms | peak RSS ÷ HAProxy | fast p99 ÷ HAProxy |",
		"|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|", []string{"slowupload"},
		func(r, base rec) []string {
			return []string{title(r["system"]), r["ok"] + "/" + r["clients"],
				statusesCell(r) + died(r), fixed(r, "upload_p50_s", 2), kibMiB(r, "hwm_kib"), r["fast_n"], r["fast_err"],
				fixed(r, "fast_p50_ms", 3), fixed(r, "fast_p99_ms", 3), against(r, base, "hwm_kib"), against(r, base, "fast_p99_ms")}
		},
		func(r rec) {
			if e := r["fast_first_err"]; e != "" {
				m.ns.add(fmt.Sprintf("%s, slowupload: first error of the fast client: %s", title(r["system"]), e))
			}
			if pace := paceOf(r); pace > 0 && r.F("upload_p50_s") > 1.5*pace {
				m.ns.add(fmt.Sprintf("%s, slowupload: the uploads took %.1f s (median) where their pace takes %.1f s: "+
					"the proxy or the load CPU (which also runs the shards) could not keep up, and the fast client's "+
					"latency shows that as much as the proxy", title(r["system"]), r.F("upload_p50_s"), pace))
			}
		})
}

func (m *mdReport) idle() {
	m.b.WriteString("## Idle keep-alive connections\n\n")
	m.b.WriteString("Each connection made one small request and stays open. KiB per connection = (RSS after − RSS before) ÷ connections held;\n" +
		"still open: connections the proxy had not closed when checked after the measurement.\n\n")
	m.idleRows("idle")
}

func (m *mdReport) h2Idle() {
	m.b.WriteString("## Idle HTTP/2 connections\n\n")
	m.b.WriteString("h2c with prior knowledge: each connection sent the preface and SETTINGS, made one small GET on stream 1\n" +
		"(HTTP/1.1 to the shards) and stays open, answering PING, sending nothing else. KiB per connection =\n" +
		"(RSS after − RSS before) ÷ connections held; still open: connections the proxy had neither closed nor\n" +
		"sent GOAWAY on when checked after the measurement.\n\n")
	m.idleRows("h2idle")
}

// idleRows: the table of the idle and h2idle tests.
func (m *mdReport) idleRows(test string) {
	m.rows("| system | connections | held | still open | RSS before MiB | RSS after MiB | KiB per connection | proxy fds | KiB/conn ÷ HAProxy |",
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|", []string{test},
		func(r, base rec) []string {
			perConn := ""
			if v, ok := r.Num("per_conn_bytes"); ok {
				perConn = fmt.Sprintf("%.1f", v/1024)
			}
			return []string{title(r["system"]), r["conns"], r["held"] + died(r),
				r["still_open"], kibMiB(r, "rss_before_kib"), kibMiB(r, "rss_after_kib"), perConn, r["fds_after"],
				against(r, base, "per_conn_bytes")}
		},
		func(r rec) {
			if e := r["err"]; e != "" {
				m.ns.add(fmt.Sprintf("%s, %s: %s connections failed, first error: %s", title(r["system"]), test, r["failed"], e))
			}
		})
}

func (m *mdReport) hugeCL() {
	rows := m.rowsOf("hugecl")
	fmt.Fprintf(m.b, "## A shard declaring Content-Length: %s (%s)\n\n", first(rows, "declared"), sizeOf(rows, "declared"))
	m.b.WriteString("The shard sends the head and a few bytes, stalls, then closes. Survives: the process is alive afterwards\n" +
		"and the next request gets 200.\n\n")
	m.rows("| system | client got | Content-Length to client | bytes received | client saw | seconds | proxy alive | next request | peak RSS MiB | peak RSS ÷ HAProxy |",
		"|---|---|---:|---:|---|---:|---|---|---:|---:|", []string{"hugecl"},
		func(r, base rec) []string {
			return []string{title(r["system"]), replaced(r["status"], "0", "no answer"), replaced(r["content_length"], "-1", ""),
				r["bytes"], replaced(r["client_err"], "", "complete body"), fixed(r, "seconds", 2),
				yesNo(r, "alive") + guardNote(r), nextRequest(r), kibMiB(r, "hwm_kib"), against(r, base, "hwm_kib")}
		}, nil)
}

func (m *mdReport) hung() {
	rows := m.rowsOf("hung")
	fmt.Fprintf(m.b, "## %s requests held by a shard for %s s\n\n", first(rows, "clients"), firstFixed(rows, "hold_s", 0))
	m.b.WriteString("Each on a connection of its own, all at once; the shard answers each after the hold. Per request:\n" +
		"peak RSS above the proxy's RSS before the test, over the number of requests. Private: the anonymous part\n" +
		"of RSS (RssAnon, sampled every 20 ms), without the mapped pages of the program's binary and libraries.\n\n")
	m.rows("| system | answered 200 | statuses | seconds | RSS before MiB | peak RSS MiB | KiB per request | private before MiB | peak private MiB | private KiB per request | peak RSS ÷ HAProxy | peak private ÷ HAProxy |",
		"|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", []string{"hung"},
		func(r, base rec) []string {
			return []string{title(r["system"]), r["ok"], r["statuses"], fixed(r, "seconds", 1),
				kibMiB(r, "rss_before_kib"), kibMiB(r, "hwm_kib"), fixed(r, "kib_per_request", 1),
				kibMiB(r, "anon_before_kib"), kibMiB(r, "anon_peak_kib"), fixed(r, "anon_kib_per_request", 1),
				against(r, base, "hwm_kib"), against(r, base, "anon_peak_kib")}
		}, nil)
}

func (m *mdReport) h2Stall() {
	rows := m.rowsOf("h2stall")
	fmt.Fprintf(m.b, "## %s HTTP/2 clients at window 0, %s streams each for %s\n\n", first(rows, "conns"),
		first(rows, "streams"), sizeOf(rows, "bytes"))
	fmt.Fprintf(m.b, "h2c with prior knowledge; each connection sends SETTINGS_INITIAL_WINDOW_SIZE 0, never a WINDOW_UPDATE,\n"+
		"then opens its streams at once, each asking an HTTP/1.1 shard for %s (a key of its own). The proxy may send\n"+
		"the answers' heads but no DATA (the connection window is the protocol's 65,535 bytes, the stream windows 0).\n"+
		"They stall %s s; then they close. RSS after: VmRSS %s s after they closed (what the proxy gave back).\n"+
		"Meanwhile a separate client makes small GETs back to back on one h2c connection (the fast client).\n\n",
		sizeOf(rows, "bytes"), firstFixed(rows, "hold_s", 0), firstFixed(rows, "after_s", 0))
	m.rows("| system | RSS before MiB | peak RSS MiB | RSS at end of stall MiB | RSS after MiB | fast GETs | fast errors | fast p50 ms | fast p99 ms | fast max ms | peak RSS ÷ HAProxy | RSS after ÷ HAProxy | fast p99 ÷ HAProxy |",
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", []string{"h2stall"},
		func(r, base rec) []string {
			return []string{title(r["system"]) + died(r), kibMiB(r, "rss_before_kib"), kibMiB(r, "hwm_kib"),
				kibMiB(r, "rss_hold_kib"), kibMiB(r, "rss_after_kib"), r["fast_n"], r["fast_err"],
				fixed(r, "fast_p50_ms", 3), fixed(r, "fast_p99_ms", 3), fixed(r, "fast_max_ms", 1), against(r, base, "hwm_kib"),
				against(r, base, "rss_after_kib"), against(r, base, "fast_p99_ms")}
		},
		func(r rec) {
			if e := r["fast_first_err"]; e != "" {
				m.ns.add(fmt.Sprintf("%s, h2stall: first error of the fast client: %s", title(r["system"]), e))
			}
		})
	m.b.WriteString("\nWhat the stalling clients got:\n\n")
	m.rows("| system | connections open | answer heads | :status | DATA bytes | RST_STREAM | GOAWAY | first error |",
		"|---|---:|---:|---|---:|---|---|---|", []string{"h2stall"},
		func(r, base rec) []string {
			return []string{title(r["system"]), r["opened"] + "/" + r["conns"], r["heads"] + "/" +
				strconv.Itoa(r.Int("conns")*r.Int("streams")), r["head_statuses"], r["data_bytes"], r["rst"], r["goaway"], r["err"]}
		}, nil)
}

// stallShard: the slowshard and blackhole tables.
func (m *mdReport) stallShard(test string) {
	rows := m.rowsOf(test)
	what := fmt.Sprintf("answering every request after %s s", firstFixed(rows, "delay_s", 0))
	if test == "blackhole" {
		what = "reading every request and never answering"
	}
	rate := "back to back"
	if v, err := strconv.ParseFloat(first(rows, "rate"), 64); err == nil && v > 0 {
		rate = fmt.Sprintf("%.0f requests/s in all on a fixed schedule", v)
	}
	fmt.Fprintf(m.b, "## One shard %s (%s)\n\n", what, test)
	fmt.Fprintf(m.b, "%s keep-alive HTTP/1.1 clients, small GETs, %s, one pool of clients per shard (each client draws\n"+
		"random keys of its own shard, mapped through the proxy first). After %s s of warm-up, a baseline of %s s with every\n"+
		"shard normal, then %s s with the shard on port %s stalled: one proxy process, the same clients and connections\n"+
		"throughout. Other shards: the requests sent in the phase that their shard answered 200; latency from the\n"+
		"request's write to the end of its answer.\n\n",
		first(rows, "clients"), rate, firstFixed(rows, "warmup_s", 0), firstFixed(rows, "duration_s", 0),
		firstFixed(rows, "duration_s", 0), first(rows, "stalled_shard"))
	m.b.WriteString("| system | phase | other shards: requests | req/s | p50 ms | p99 ms | p99.9 ms | errors | p99 ÷ baseline | p99 ÷ HAProxy | proxy core used |\n" +
		"|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	all, base := table(m.recs, test)
	for _, r := range all {
		if r.Failed() {
			fmt.Fprintf(m.b, "| %s | n/a |%s\n", title(r["system"]), strings.Repeat(" |", 9))
			m.ns.add(fmt.Sprintf("%s, %s: %s", title(r["system"]), test, r["note"]))
			continue
		}
		if r["err"] != "" {
			fmt.Fprintf(m.b, "| %s | n/a |%s\n", title(r["system"]), strings.Repeat(" |", 9))
			m.ns.add(fmt.Sprintf("%s, %s: %s", title(r["system"]), test, r["err"]))
			continue
		}
		for _, ph := range []struct{ p, name string }{{"base", "baseline"}, {"stall", "shard stalled"}} {
			p := ph.p + "_"
			errs := replaced(onlyErrors(r[p+"other_statuses"]), "", "0")
			fmt.Fprintf(m.b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				title(r["system"])+died(r), ph.name, r[p+"other_n"], fixed(r, p+"other_rps", 0),
				fixed(r, p+"other_p50_ms", 3), fixed(r, p+"other_p99_ms", 3), fixed(r, p+"other_p999_ms", 3), errs,
				against(r, r, p+"other_p99_ms", "base_other_p99_ms"), against(r, base, p+"other_p99_ms"),
				pct(r, p+"core"))
			if e := r[p+"other_err"]; e != "" {
				m.ns.add(fmt.Sprintf("%s, %s, %s: first error on the other shards: %s", title(r["system"]), test, ph.name, e))
			}
			if w := r.Int(p + "other_wrong_shard"); w > 0 {
				m.ns.add(fmt.Sprintf("%s, %s, %s: %d answers to the other shards came from another shard than their key's",
					title(r["system"]), test, ph.name, w))
			}
		}
		m.noteDeath(r)
	}
	m.stalledRows(all, base)
}

// stalledRows: how the stalled shard's own requests ended.
func (m *mdReport) stalledRows(all []rec, base rec) {
	m.b.WriteString("\nThe stalled shard's requests in the stalled phase (its pool's clients wait for each answer; a request\n" +
		"still unanswered 1 s after the phase ended is cut: \"still waiting at the end\"; clients stuck: its clients with\n" +
		"a request in flight when the phase ended):\n\n")
	m.b.WriteString("| system | requests sent | answered | how they ended | answer p50 s | answered by another shard | still waiting at the end | clients stuck | peak RSS MiB | peak RSS ÷ HAProxy |\n" +
		"|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range all {
		if r.Failed() || r["err"] != "" {
			fmt.Fprintf(m.b, "| %s | n/a |%s\n", title(r["system"]), strings.Repeat(" |", 8))
			continue
		}
		ended := r["stall_stalled_statuses"]
		if e := r["stall_stalled_err"]; e != "" {
			ended += " (" + e + ")"
		}
		// A request sent in the last moment of the baseline may reach the
		// shard once it is stalled: it is counted with the stalled phase's.
		cut := r.Int("stall_stalled_cut") + r.Int("base_stalled_cut")
		sent := statusTotal(r["stall_stalled_statuses"]) + cut
		fmt.Fprintf(m.b, "| %s | %d | %s | %s | %s | %s | %d | %s | %s | %s |\n", title(r["system"]), sent,
			r["stall_stalled_answered"], ended, fixedDiv(r, "stall_stalled_p50_ms", 1000, 2), r["stall_stalled_moved"],
			cut, r["stuck_clients"], kibMiB(r, "hwm_kib"), against(r, base, "hwm_kib"))
	}
}

// onlyErrors keeps the non-200 entries of a statuses cell: "502:3,error:1".
func onlyErrors(st string) string {
	var out []string
	for _, e := range strings.Split(st, ",") {
		if e != "" && !strings.HasPrefix(e, "200:") {
			out = append(out, e)
		}
	}
	return strings.Join(out, ",")
}

// statusTotal adds up a statuses cell's counts.
func statusTotal(st string) int {
	n := 0
	for _, e := range strings.Split(st, ",") {
		if i := strings.LastIndexByte(e, ':'); i >= 0 {
			v, _ := strconv.Atoi(e[i+1:])
			n += v
		}
	}
	return n
}

func fixedDiv(r rec, k string, div float64, prec int) string {
	v, ok := r.Num(k)
	if !ok || v == 0 {
		return ""
	}
	return strconv.FormatFloat(v/div, 'f', prec, 64)
}

// pct: a share as "93%".
func pct(r rec, k string) string {
	v, ok := r.Num(k)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

// replaced is to where s is from, else s.
func replaced(s, from, to string) string {
	if s == from {
		return to
	}
	return s
}

// nextRequest: what the request after a hugecl test got, "200", or with an
// error "502, read: connection reset by peer".
func nextRequest(r rec) string {
	next := replaced(r["next_status"], "0", "")
	if e := r["next_err"]; e != "" {
		next = strings.TrimPrefix(next+", "+e, ", ")
	}
	return next
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
