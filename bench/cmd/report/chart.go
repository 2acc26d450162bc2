package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Fixed colours per system, so charts from different runs compare at a glance.
var systemColor = map[string]color.Color{
	"shard-proxy": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"candidate":   color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	"haproxy":     color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"nginx":       color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	"caddy":       color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"direct":      color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff},
}

// writeChart draws three panels, throughput, p99 latency and CPU per
// request, with one bar per system grouped by scenario and the value written
// above each bar; "n/a" marks a system that cannot do a scenario.
func writeChart(path string, cells []cell) error {
	var scenarios, systems []string
	for _, sc := range scenarioOrder {
		for _, c := range cells {
			if c.scenario == sc {
				scenarios = append(scenarios, sc)
				break
			}
		}
	}
	for _, sys := range systemOrder {
		for _, c := range cells {
			if c.system == sys && c.rounds > 0 {
				systems = append(systems, sys)
				break
			}
		}
	}
	if len(scenarios) == 0 || len(systems) == 0 {
		return fmt.Errorf("nothing measured to chart")
	}
	rps, err := panel(cells, scenarios, systems, "Throughput (higher is better)", "requests/s",
		func(c cell) float64 { return c.rps }, "%.0fk", 1e-3)
	if err != nil {
		return err
	}
	p99, err := panel(cells, scenarios, systems, "p99 latency (lower is better)", "milliseconds",
		func(c cell) float64 { return c.p99us / 1000 }, "%.1f", 1)
	if err != nil {
		return err
	}
	cpu, err := panel(cells, scenarios, systems, "Proxy CPU time per request (lower is better)", "microseconds",
		func(c cell) float64 { return c.cpuUS }, "%.1f", 1)
	if err != nil {
		return err
	}
	const width, height = 22 * vg.Centimeter, 33 * vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))
	dc := draw.New(img)
	// White background: the default is transparent, which renders black in
	// some viewers.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3,
		PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3, PadY: vg.Millimeter * 6}
	canvases := plot.Align([][]*plot.Plot{{rps}, {p99}, {cpu}}, tiles, dc)
	rps.Draw(canvases[0][0])
	p99.Draw(canvases[1][0])
	cpu.Draw(canvases[2][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func panel(cells []cell, scenarios, systems []string, title, ylabel string,
	value func(cell) float64, labelFmt string, labelScale float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	const barWidth = 12 * vg.Millimeter
	top := 0.0
	for i, sys := range systems {
		vals := make(plotter.Values, len(scenarios))
		var xys plotter.XYs
		var labels []string
		for j, sc := range scenarios {
			c, ok := find(cells, sys, sc)
			v := 0.0
			label := "n/a"
			if ok {
				v = value(c)
				label = fmt.Sprintf(labelFmt, v*labelScale)
			}
			if ok && v == 0 {
				continue // not measured for this system, e.g. CPU of direct
			}
			vals[j] = v
			top = max(top, v)
			xys = append(xys, plotter.XY{X: float64(j), Y: v})
			labels = append(labels, label)
		}
		bars, err := plotter.NewBarChart(vals, barWidth)
		if err != nil {
			return nil, err
		}
		bars.Color = systemColor[sys]
		bars.LineStyle.Width = 0
		offset := barWidth * vg.Length(float64(i)-float64(len(systems)-1)/2)
		bars.Offset = offset
		p.Add(bars)
		if slices.ContainsFunc(vals, func(v float64) bool { return v > 0 }) {
			p.Legend.Add(systemTitle[sys], bars)
		}
		if len(xys) > 0 {
			l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return nil, err
			}
			for k := range l.TextStyle {
				l.TextStyle[k].Font.Size = vg.Points(8)
				l.TextStyle[k].XAlign = draw.XCenter
			}
			l.Offset = vg.Point{X: offset, Y: vg.Points(2)}
			p.Add(l)
		}
	}
	// Room above the tallest bar for its label and the legend.
	p.Y.Max = top * 1.3
	p.NominalX(scenarios...)
	p.X.Min, p.X.Max = -0.5, float64(len(scenarios))-0.5
	p.X.Tick.Label.Font.Size = vg.Points(11)
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // scenario centres need no line through the bars
	p.Add(grid)
	return p, nil
}
