package gateway

import (
	"fmt"
	"html/template"
	"strings"
)

// A chart is drawn on the server as inline SVG: a few polylines over the
// retained history, no script and no library.
type chart struct {
	Title  string
	Series []series
}

type series struct {
	Name   string
	Values []float64
}

var chartColors = []string{"#2563eb", "#dc2626", "#16a34a", "#9333ea"}

const chartW, chartH, chartPad = 300.0, 90.0, 4.0

// SVG renders the chart. Every value is a number the server formats, so the
// markup needs no escaping beyond the series names.
func (c chart) SVG() template.HTML {
	top, n := 1.0, 0
	for _, s := range c.Series {
		n = max(n, len(s.Values))
		for _, v := range s.Values {
			top = max(top, v)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">`, chartW, chartH+14, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<line x1="0" y1="%g" x2="%g" y2="%g" stroke="#bbb"/>`, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%g" y="10" font-size="9" text-anchor="end" fill="#666">max %g</text>`, chartW, top)
	for i, s := range c.Series {
		color := chartColors[i%len(chartColors)]
		var pts []string
		for j, v := range s.Values {
			x := chartPad
			if n > 1 {
				x += float64(j) * (chartW - 2*chartPad) / float64(n-1)
			}
			y := chartH - chartPad - v/top*(chartH-2*chartPad-10)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		if len(pts) == 1 {
			pts = append(pts, pts[0])
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%g" font-size="9" fill="%s">%s</text>`, 4+i*90, chartH+12, color, template.HTMLEscapeString(s.Name))
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="middle" fill="#666">no cycles yet</text>`, chartW/2, chartH/2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
