package load

import (
	_ "embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"
	"strings"
)

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = htmltemplate.Must(htmltemplate.New("report").Funcs(htmltemplate.FuncMap{
	"ms":     func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"mul100": func(v float64) float64 { return 100 * v },
	"add":    func(a, b float64) float64 { return a + b },
}).Parse(reportHTML))

// palette colours the shards, in order; it repeats past its end.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// WriteHTML writes the report as one self-contained HTML page: the
// summary, the table, and two SVG charts drawn here (no script, no
// fetch): p99 latency over time per shard, and requests and distinct
// keys per shard.
func (rep *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		return err
	}
	summary, _, _ := strings.Cut(text.String(), "\n\n")
	var lines []summaryLine
	for _, l := range strings.Split(summary, "\n") {
		lines = append(lines, summaryLine{Text: l, Warn: strings.HasPrefix(l, "INTERRUPTED") || strings.HasPrefix(l, "WARNING")})
	}
	return reportTmpl.Execute(w, map[string]any{
		"R":       rep,
		"Summary": lines,
		"Rows":    append([]Row{rep.All}, rep.Shards...),
		"Latency": rep.latencyChart(),
		"Keys":    rep.keysChart(),
	})
}

// summaryLine is one line of the text report's summary.
type summaryLine struct {
	Text string
	Warn bool
}

// chart is an SVG's geometry: a plot area inside margins.
const (
	chartW, chartH         = 900.0, 320.0
	marginL, marginR       = 60.0, 150.0
	marginT, marginB       = 15.0, 40.0
	plotW, plotH           = chartW - marginL - marginR, chartH - marginT - marginB
	barH, barGap, barLabel = 18.0, 10.0, 130.0
)

// svgSeries is one shard's line in the latency chart.
type svgSeries struct {
	Shard, Color, Points string
	LegendY              float64
	Max                  float64
}

// latencyChart is the p99 of each interval, per shard, as polylines.
func (rep *Report) latencyChart() map[string]any {
	maxT, maxV := rep.Elapsed, 0.0
	for _, r := range rep.Shards {
		for _, p := range r.Series {
			maxT, maxV = math.Max(maxT, p.T), math.Max(maxV, p.P99)
		}
	}
	maxT, maxV = math.Max(maxT, 1), niceCeil(math.Max(maxV, 0.001))
	var series []svgSeries
	for i, r := range rep.Shards {
		var pts []string
		for _, p := range r.Series {
			if p.N == 0 {
				continue
			}
			x, y := marginL+p.T/maxT*plotW, marginT+plotH-p.P99/maxV*plotH
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		series = append(series, svgSeries{Shard: r.Shard, Color: palette[i%len(palette)], Points: strings.Join(pts, " "),
			LegendY: marginT + 14*float64(i) + 10, Max: r.Latency.P99})
	}
	return map[string]any{"W": chartW, "H": chartH, "Series": series, "X0": marginL, "X1": marginL + plotW,
		"Y0": marginT, "Y1": marginT + plotH, "LegendX": marginL + plotW + 15,
		"XTicks": ticks(maxT, marginL, plotW, false), "YTicks": ticks(maxV, marginT+plotH, plotH, true)}
}

// tick is one labelled mark on an axis.
type tick struct {
	Pos   float64
	Label string
}

// ticks are five marks from 0 to top along an axis of length size from
// origin (upward when vertical).
func ticks(top, origin, size float64, vertical bool) []tick {
	var out []tick
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		pos := origin + size*float64(i)/4
		if vertical {
			pos = origin - size*float64(i)/4
		}
		digits := 3
		if !vertical {
			digits = 1 // seconds
		}
		out = append(out, tick{Pos: pos, Label: strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.*f", digits, v), "0"), ".")})
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// svgBar is one shard's bars in the keys chart.
type svgBar struct {
	Shard, Color          string
	Y, ReqW, KeysW, TextY float64
	Requests, Keys        int64
	ReqShare, KeysShare   float64
	ReqLabelX, KeysLabelX float64
}

// keysChart is, per shard, its requests and its distinct keys as bars,
// each as a share of all.
func (rep *Report) keysChart() map[string]any {
	var bars []svgBar
	w := chartW - barLabel - 180
	for i, r := range rep.Shards {
		b := svgBar{Shard: r.Shard, Color: palette[i%len(palette)], Y: marginT + float64(i)*(2*barH+barGap),
			Requests: r.Requests, Keys: r.Keys}
		if rep.All.Requests > 0 {
			b.ReqShare = float64(r.Requests) / float64(rep.All.Requests)
		}
		if rep.All.Keys > 0 {
			b.KeysShare = float64(r.Keys) / float64(rep.All.Keys)
		}
		b.ReqW, b.KeysW = math.Max(b.ReqShare*w, 1), math.Max(b.KeysShare*w, 1)
		b.TextY = b.Y + barH - 4
		b.ReqLabelX, b.KeysLabelX = barLabel+b.ReqW+6, barLabel+b.KeysW+6
		bars = append(bars, b)
	}
	return map[string]any{"W": chartW, "H": marginT + float64(len(bars))*(2*barH+barGap) + 10, "Bars": bars,
		"X0": barLabel, "BarH": barH, "Counted": rep.All.Keys > 0}
}
