package dashboards

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
)

// LayoutSVG draws a dashboard's panels where Grafana places them (its
// 24-column grid, gridPos): each panel's title, type and first query, for
// the README. It is a map of the dashboard, not a screenshot: no data.
func LayoutSVG(dashboardJSON []byte) ([]byte, error) {
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string                   `json:"type"`
			Title   string                   `json:"title"`
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("dashboard layout: %w", err)
	}
	const col, row, top = 40, 22, 34
	height := 0
	for _, p := range d.Panels {
		height = max(height, p.GridPos.Y+p.GridPos.H)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", 24*col, top+height*row+4)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#111217"/><text x="8" y="22" fill="#ccccdc" font-size="16">%s (panel layout)</text>`+"\n", html.EscapeString(d.Title))
	for _, p := range d.Panels {
		x, y, w, h := p.GridPos.X*col, top+p.GridPos.Y*row, p.GridPos.W*col, p.GridPos.H*row
		if p.Type == "row" {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#ccccdc" font-weight="bold">%s</text>`+"\n", x+4, y+16, html.EscapeString(p.Title))
			continue
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" rx="3" fill="#181b1f" stroke="#2f3238"/>`+"\n", x+2, y+2, w-4, h-4)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#ccccdc">%s</text>`+"\n", x+10, y+20, html.EscapeString(p.Title))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#6e9fff" font-size="10">%s</text>`+"\n", x+10, y+36, html.EscapeString(p.Type))
		if len(p.Targets) > 0 {
			expr := p.Targets[0].Expr
			if limit := w/6 - 4; len(expr) > limit && limit > 3 {
				expr = expr[:limit-1] + "…"
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#8e8e8e" font-size="10" font-family="monospace">%s</text>`+"\n", x+10, y+h-12, html.EscapeString(expr))
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String()), nil
}
