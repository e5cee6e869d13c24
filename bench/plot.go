package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The two plots of a run, drawn with gonum/plot and written as SVG.

var palette = []color.RGBA{
	{0x4e, 0x79, 0xa7, 0xff}, {0xf2, 0x8e, 0x2b, 0xff}, {0x59, 0xa1, 0x4f, 0xff},
	{0xe1, 0x57, 0x59, 0xff}, {0x76, 0xb7, 0xb2, 0xff}, {0xb0, 0x7a, 0xa1, 0xff},
}

const (
	plotW, plotH = 6.5 * vg.Inch, 3.25 * vg.Inch
	axisW        = 24 // points the Y axis and its labels take (whisker placement)
)

// medianBars are a path's medians with whiskers from min to max.
type medianBars struct{ s []Summary }

func (m medianBars) Len() int                    { return len(m.s) }
func (m medianBars) XY(i int) (float64, float64) { return float64(i), m.s[i].Median }
func (m medianBars) YError(i int) (float64, float64) {
	return m.s[i].Median - m.s[i].Min, m.s[i].Max - m.s[i].Median
}

func (m medianBars) values() plotter.Values {
	v := make(plotter.Values, len(m.s))
	for i, s := range m.s {
		v[i] = s.Median
	}
	return v
}

// throughputSVG is a grouped bar chart: per path, the median of one and of
// four TCP streams, whiskers min to max.
func throughputSVG(r *Results) ([]byte, error) {
	p := plot.New()
	p.Title.Text = "Throughput, Gbit/s (median; whiskers min–max)"
	p.Y.Min = 0
	var names []string
	for _, pr := range r.Paths {
		names = append(names, pr.Name)
	}
	w := vg.Points(18)
	for j, series := range []struct {
		label string
		pick  func(PathResult) Summary
	}{{"1 TCP stream", func(p PathResult) Summary { return p.TCP1 }}, {"4 TCP streams", func(p PathResult) Summary { return p.TCP4 }}} {
		m := medianBars{}
		for _, pr := range r.Paths {
			m.s = append(m.s, series.pick(pr))
		}
		bars, err := plotter.NewBarChart(m.values(), w)
		if err != nil {
			return nil, err
		}
		bars.Color, bars.LineStyle.Width = palette[j], 0
		bars.Offset = vg.Length(j*2-1) * w / 2
		// Whiskers are placed in data units: with X spanning -0.5..n-0.5,
		// one unit is the data area's width (the plot's, less the Y axis) over n.
		unit := float64(plotW-axisW) / float64(max(len(r.Paths), 1))
		errs, err := plotter.NewYErrorBars(offsetErrors{m, float64(bars.Offset) / unit})
		if err != nil {
			return nil, err
		}
		p.Add(bars, errs)
		p.Legend.Add(series.label, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	return render(p)
}

// offsetErrors places a series' whiskers over its bars.
type offsetErrors struct {
	m   medianBars
	off float64
}

func (o offsetErrors) Len() int                        { return o.m.Len() }
func (o offsetErrors) XY(i int) (float64, float64)     { x, y := o.m.XY(i); return x + o.off, y }
func (o offsetErrors) YError(i int) (float64, float64) { return o.m.YError(i) }

// latencySVG is each path's ping RTT CDF.
func latencySVG(r *Results) ([]byte, error) {
	p := plot.New()
	p.Title.Text = "Ping RTT CDF"
	p.X.Label.Text, p.Y.Label.Text = "ms", "fraction of pings"
	p.Y.Min, p.Y.Max, p.X.Min = 0, 1, 0
	maxV := 0.0
	for i, pr := range r.Paths {
		if len(pr.RTTs) == 0 {
			continue
		}
		s := slices.Sorted(slices.Values(pr.RTTs))
		maxV = max(maxV, quantile(s, 0.995))
		pts := make(plotter.XYs, len(s))
		for k, v := range s {
			pts[k] = plotter.XY{X: v, Y: float64(k+1) / float64(len(s))}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pr.Name, err)
		}
		l.Color, l.Width = palette[i%len(palette)], vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(pr.Name, l)
	}
	if maxV > 0 {
		p.X.Max = maxV // the slowest 0.5% would flatten the rest
	}
	p.Legend.Left, p.Legend.Top = false, false
	return render(p)
}

func render(p *plot.Plot) ([]byte, error) {
	wt, err := p.WriterTo(plotW, plotH, "svg")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
