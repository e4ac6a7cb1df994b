package main

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/blobgc/blobgc/bench"
)

var (
	blobgcColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	etcdColor   = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// plots writes throughput.png (writes vs clients), latency.png (p50 and
// p99 per workload) and failover.png into dir.
func plots(rep *report, sel []workload, dir string) error {
	// Throughput against clients, for the write workloads.
	p := plot.New()
	p.Title.Text = "Single writes: throughput vs clients"
	p.X.Label.Text = "clients"
	p.Y.Label.Text = "acknowledged writes/s"
	var series []any // name, points, name, points: one call, so each line gets its own colour
	for _, sys := range []string{"blobgc", "etcd"} {
		var xys plotter.XYs
		for _, w := range sel {
			if w.blobgc.Mix[bench.OpPin] == 0 {
				continue
			}
			if sm, ok := medians(rep, sys, w.Name); ok {
				xys = append(xys, plotter.XY{X: float64(w.Clients), Y: sm.ops})
			}
		}
		if len(xys) > 0 {
			series = append(series, sys, xys)
		}
	}
	if err := plotutil.AddLinePoints(p, series...); err != nil {
		return err
	}
	p.Legend.Top = true
	if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "throughput.png")); err != nil {
		return err
	}

	// Latency percentiles per workload that both ran.
	var names []string
	var vals [4]plotter.Values // blobgc p50, blobgc p99, etcd p50, etcd p99 (ms)
	for i, w := range sel {
		b, _ := medians(rep, "blobgc", w.Name)
		e, ok := medians(rep, "etcd", w.Name)
		if !ok {
			continue
		}
		names = append(names, fmt.Sprintf("W%d", i+1))
		vals[0], vals[1] = append(vals[0], b.p50*1000), append(vals[1], b.p99*1000)
		vals[2], vals[3] = append(vals[2], e.p50*1000), append(vals[3], e.p99*1000)
	}
	if len(names) > 0 {
		p = plot.New()
		p.Title.Text = "Latency per workload (W1.. in table order)"
		p.Y.Label.Text = "ms"
		labels := []string{"blobgc p50", "blobgc p99", "etcd p50", "etcd p99"}
		colors := []color.Color{blobgcColor, color.RGBA{R: 0x9e, G: 0xc9, B: 0xe9, A: 0xff}, etcdColor, color.RGBA{R: 0xff, G: 0xc9, B: 0x8f, A: 0xff}}
		w := vg.Points(10)
		for i := range vals {
			bars, err := plotter.NewBarChart(vals[i], w)
			if err != nil {
				return err
			}
			bars.Color = colors[i]
			bars.LineStyle.Width = 0
			bars.Offset = w * vg.Length(i-2)
			p.Add(bars)
			p.Legend.Add(labels[i], bars)
		}
		p.Legend.Top, p.Legend.Left = true, true // the batched workloads, last, have the tallest bars
		p.NominalX(names...)
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "latency.png")); err != nil {
			return err
		}
	}

	// Failover gaps, each kill a point.
	p = plot.New()
	p.Title.Text = "Leader SIGKILL to the next acknowledged write"
	p.Y.Label.Text = "seconds"
	for i, sys := range []string{"blobgc", "etcd"} {
		var xys plotter.XYs
		for j, s := range rep.Failover[sys] {
			xys = append(xys, plotter.XY{X: float64(i) + 0.05*float64(j%5), Y: s})
		}
		if len(xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		sc.Color = []color.Color{blobgcColor, etcdColor}[i]
		p.Add(sc)
		p.Legend.Add(sys, sc)
	}
	p.NominalX("blobgc", "etcd")
	return p.Save(5*vg.Inch, 4*vg.Inch, filepath.Join(dir, "failover.png"))
}
