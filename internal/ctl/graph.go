package ctl

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	svg "github.com/ajstarks/svgo"

	"github.com/weftnet/weft/api"
)

// meshNode is one vertex of the graph: a node (or an external peer).
type meshNode struct {
	name, location string
	direct         bool
	external       bool
}

type meshEdge struct {
	a, b int
	path string
}

// meshGraph is the whole mesh from one node's status: every pair of nodes
// with the path between them (api.PathBetween, which both ends compute
// alike), and each external peer joined to every node.
func meshGraph(st api.Status) ([]meshNode, []meshEdge) {
	nodes := []meshNode{{name: st.Node.Name, location: st.Node.Location, direct: st.Node.IntraLocation == "direct"}}
	for _, p := range st.Peers {
		nodes = append(nodes, meshNode{name: p.Name, location: p.Location, direct: p.IntraLocation == "direct", external: p.Path == "external"})
	}
	slices.SortFunc(nodes, func(a, b meshNode) int { return strings.Compare(a.location+"\x00"+a.name, b.location+"\x00"+b.name) })
	var edges []meshEdge
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			a, b := nodes[i], nodes[j]
			switch {
			case a.external && b.external:
				continue
			case a.external || b.external:
				edges = append(edges, meshEdge{i, j, "external"})
			default:
				edges = append(edges, meshEdge{i, j, api.PathBetween(a.location, a.direct, b.location, b.direct)})
			}
		}
	}
	return nodes, edges
}

var edgeStyle = map[string]struct{ dot, color, dash string }{
	"direct":    {"solid", "#2e7d32", ""},
	"encrypted": {"dashed", "#1565c0", "8,5"},
	"external":  {"dotted", "#8e24aa", "2,4"},
}

func graph(base, format string, out io.Writer) error {
	if format != "dot" && format != "svg" {
		return fmt.Errorf("-o %q: want dot or svg", format)
	}
	var st api.Status
	if _, err := get(base+"/v1/status", &st); err != nil {
		return err
	}
	nodes, edges := meshGraph(st)
	if format == "svg" {
		renderSVG(out, st.Node.Name, nodes, edges)
		return nil
	}
	fmt.Fprintf(out, "graph weft {\n  label=%q;\n  node [shape=box, style=rounded];\n", "weft mesh, as "+st.Node.Name+" sees it")
	for loc, members := range byLocation(nodes) {
		if loc == "" {
			for _, i := range members {
				fmt.Fprintf(out, "  %q%s;\n", nodes[i].name, dotShape(nodes[i]))
			}
			continue
		}
		fmt.Fprintf(out, "  subgraph %q {\n    label=%q;\n", "cluster_"+loc, "location "+loc)
		for _, i := range members {
			fmt.Fprintf(out, "    %q%s;\n", nodes[i].name, dotShape(nodes[i]))
		}
		fmt.Fprintln(out, "  }")
	}
	for _, e := range edges {
		s := edgeStyle[e.path]
		fmt.Fprintf(out, "  %q -- %q [label=%q, style=%s, color=%q];\n", nodes[e.a].name, nodes[e.b].name, e.path, s.dot, s.color)
	}
	fmt.Fprintln(out, "}")
	return nil
}

func dotShape(n meshNode) string {
	if n.external {
		return " [shape=ellipse]"
	}
	return ""
}

// byLocation groups node indexes by location ("" for none), in order.
func byLocation(nodes []meshNode) map[string][]int {
	out := map[string][]int{}
	for i, n := range nodes {
		loc := n.location
		if n.external {
			loc = ""
		}
		out[loc] = append(out[loc], i)
	}
	return out
}

// renderSVG lays the mesh out with svgo: each location a box on a circle,
// its nodes on a small circle inside, location-less nodes and external
// peers on their own; edges styled by path kind, with a legend.
func renderSVG(w io.Writer, self string, nodes []meshNode, edges []meshEdge) {
	groups := byLocation(nodes)
	var names []string
	for loc, members := range groups {
		if loc != "" {
			names = append(names, loc)
			continue
		}
		for _, i := range members { // each a group of its own
			names = append(names, "\x00"+nodes[i].name)
		}
	}
	slices.Sort(names)
	const width, height, box = 900, 700, 220
	cx, cy := width/2.0, height/2.0+20
	ring := 0.0
	if len(names) > 1 {
		ring = math.Min(width, height-40)/2 - box/2 - 20
	}
	pos := make([][2]float64, len(nodes))
	canvas := svg.New(w)
	canvas.Start(width, height)
	canvas.Rect(0, 0, width, height, "fill:#ffffff")
	canvas.Text(20, 30, "weft mesh, as "+self+" sees it", "font-family:sans-serif;font-size:18px;fill:#222")
	type frame struct {
		x, y  float64
		label string
	}
	var frames []frame
	for g, name := range names {
		// Groups around a circle from the left (two sit side by side),
		// nodes inside a group around a circle from the top.
		angle := 2*math.Pi*float64(g)/float64(len(names)) + math.Pi
		gx, gy := cx+ring*math.Cos(angle), cy+ring*math.Sin(angle)
		members := groups[name]
		if strings.HasPrefix(name, "\x00") {
			for _, i := range groups[""] {
				if nodes[i].name == name[1:] {
					members = []int{i}
				}
			}
		} else {
			frames = append(frames, frame{gx, gy, "location " + name})
		}
		r := 0.0
		if len(members) > 1 {
			r = box/2 - 45
		}
		for k, i := range members {
			a := 2*math.Pi*float64(k)/float64(len(members)) - math.Pi/2
			pos[i] = [2]float64{gx + r*math.Cos(a), gy + r*math.Sin(a)}
		}
	}
	for _, f := range frames {
		canvas.Roundrect(int(f.x-box/2), int(f.y-box/2), box, box, 14, 14, "fill:#f5f5f5;stroke:#9e9e9e;stroke-width:1.5")
		canvas.Text(int(f.x-box/2+10), int(f.y-box/2+20), f.label, "font-family:sans-serif;font-size:13px;fill:#555")
	}
	for _, e := range edges {
		s := edgeStyle[e.path]
		style := "stroke:" + s.color + ";stroke-width:2"
		if s.dash != "" {
			style += ";stroke-dasharray:" + s.dash
		}
		a, b := pos[e.a], pos[e.b]
		canvas.Line(int(a[0]), int(a[1]), int(b[0]), int(b[1]), style)
	}
	for i, n := range nodes {
		fill := "#ffffff"
		if n.name == self {
			fill = "#fff8e1"
		}
		if n.external {
			fill = "#f3e5f5"
		}
		x, y := int(pos[i][0]), int(pos[i][1])
		canvas.Roundrect(x-40, y-16, 80, 32, 8, 8, "fill:"+fill+";stroke:#424242;stroke-width:1.5")
		canvas.Text(x, y+5, n.name, "font-family:sans-serif;font-size:13px;text-anchor:middle;fill:#111")
	}
	y := height - 60
	for k, kind := range []string{"direct", "encrypted", "external"} {
		s := edgeStyle[kind]
		style := "stroke:" + s.color + ";stroke-width:2"
		if s.dash != "" {
			style += ";stroke-dasharray:" + s.dash
		}
		canvas.Line(20, y+k*18, 60, y+k*18, style)
		canvas.Text(68, y+k*18+4, kind, "font-family:sans-serif;font-size:12px;fill:#333")
	}
	canvas.End()
}
