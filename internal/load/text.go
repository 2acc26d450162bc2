package load

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report as a few lines of summary and a table, one
// row for all shards and one per shard; latencies in milliseconds.
func (rep *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s %s via %s, keys %s\n", rep.Method, rep.Target, rep.Via, rep.Keys)
	if rep.Interrupted {
		fmt.Fprintf(b, "INTERRUPTED after %.1fs of %gs: the figures are what was measured until then\n", rep.Elapsed, rep.Duration)
	}
	if rep.Mode == "open" {
		fmt.Fprintf(b, "open loop at %g req/s for %.1fs: %d scheduled, %d sent", rep.Rate, rep.Elapsed, rep.Scheduled, rep.Sent)
		if l := rep.Late; l != nil {
			fmt.Fprintf(b, ", %d late by more than %gms (lateness p99 %.3fms, max %.3fms)", l.Count, l.Threshold, l.P99, l.Max)
		}
	} else {
		fmt.Fprintf(b, "closed loop, %d at a time for %.1fs: %d sent", rep.Concurrency, rep.Elapsed, rep.Sent)
	}
	fmt.Fprintf(b, "; %d connections", rep.Connections)
	if rep.GeneratorCPU > 0 && rep.Elapsed > 0 && rep.Sent > 0 {
		fmt.Fprintf(b, "; generator CPU %.2fs (%.0f%% of a core, %.1fµs a request)", rep.GeneratorCPU,
			100*rep.GeneratorCPU/rep.Elapsed, 1e6*rep.GeneratorCPU/float64(rep.Sent))
	}
	b.WriteString("\n")
	if rep.Unfinished > 0 {
		fmt.Fprintf(b, "%d requests in flight were cut short and are not counted\n", rep.Unfinished)
	}
	if rep.SplitKeys > 0 {
		fmt.Fprintf(b, "WARNING: %d keys were answered by more than one shard\n", rep.SplitKeys)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "shard\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tkeys\t\tstatus\n")
	for _, r := range append([]Row{rep.All}, rep.Shards...) {
		l := r.Latency
		keys := "-"
		if r.Keys > 0 {
			keys = fmt.Sprint(r.Keys)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\t%s\n",
			r.Shard, r.Requests, r.Rate, l.P50, l.P90, l.P99, l.P999, l.Max, keys, r.StatusText())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// StatusText is the row's status counts and errors, e.g. "200:990
// 503:10 timeout:2", codes in order.
func (r Row) StatusText() string {
	var parts []string
	for _, code := range sortedKeys(r.Status) {
		parts = append(parts, fmt.Sprintf("%s:%d", code, r.Status[code]))
	}
	for _, kind := range sortedKeys(r.Errors) {
		parts = append(parts, fmt.Sprintf("%s:%d", kind, r.Errors[kind]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
