package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// ScaleRun is what make bench-scale measured (e2e's BenchmarkScale): the
// lab's API server holding N Node objects, three of them with a real agent.
type ScaleRun struct {
	Time    string       `json:"time"`
	Machine string       `json:"machine"`
	Sizes   []ScalePoint `json:"sizes"`
	// OnDemandAfter: the agents ran with --on-demand-after this (and no
	// start grace); empty: every peer stays on the device.
	OnDemandAfter string `json:"onDemandAfter,omitempty"`
}

// ScalePoint is one cluster size. Per-agent figures are the worst of the
// three agents (the most memory, the most CPU, the slowest).
type ScalePoint struct {
	Nodes int `json:"nodes"`

	ConvergeSeconds float64 `json:"convergeSeconds"` // agent start → every peer and route installed
	// Agent start → every agent a gossip member of the others (the idle
	// figures are read after it: a join is a change of every agent's
	// peers, not rest).
	GossipSeconds float64 `json:"gossipSeconds,omitempty"`
	RSSMiB        float64 `json:"rssMiB"`
	HeapMiB       float64 `json:"heapMiB"` // Go heap in use
	// What the RSS is made of, of the agent with the most: the pages
	// mapped from the binary (RssFile) and the Go heap live after a GC
	// (the rest of the heap in use is the GC's headroom, GOGC).
	RSSFileMiB  float64 `json:"rssFileMiB,omitempty"`
	HeapLiveMiB float64 `json:"heapLiveMiB,omitempty"`
	// RSSPeakMiB: the most any agent held since it started (VmHWM), read
	// with the steady figures: the start, when every peer is written to
	// the device before the idle ones rest.
	RSSPeakMiB float64 `json:"rssPeakMiB,omitempty"`
	// RSSSteadyMaxMiB: the most any agent held in the steady minute
	// (read each second), passes included; the RSS target is judged on
	// it when there is one.
	RSSSteadyMaxMiB float64 `json:"rssSteadyMaxMiB,omitempty"`
	// The steady minute includes Prometheus' scrapes of every agent's
	// /metrics (every 30 s, the chart's ServiceMonitor interval): the
	// slowest one's time and its size.
	ScrapeMillis float64 `json:"scrapeMillis,omitempty"`
	ScrapeKB     float64 `json:"scrapeKB,omitempty"`
	// Idle CPU in % of one core over 60 s: right after converging (dead
	// peers' handshakes still running) and once their keepalive rests.
	IdleCPUFirstMinute float64 `json:"idleCpuFirstMinutePct"`
	IdleCPUSteady      float64 `json:"idleCpuSteadyPct"`
	DormantPeers       int     `json:"dormantPeers"`

	// Live simulated peers (internal/simpeer): each agent talks to a
	// working set of ActiveSet generated nodes for ActiveSeconds, a ping a
	// second to each, one newcomer (a resting peer) a second.
	Live              bool    `json:"live"`
	ActiveSeconds     int     `json:"activeSeconds,omitempty"`
	ActiveSet         int     `json:"activeSet,omitempty"`
	ActivePeers       int     `json:"activePeers,omitempty"`  // on the device at the end (max over agents)
	RestingPeers      int     `json:"restingPeers,omitempty"` // off it then (that agent)
	ActiveCPU         float64 `json:"activeCpuPct,omitempty"`
	ActiveRSSMiB      float64 `json:"activeRssMiB,omitempty"`
	HandshakesSec     float64 `json:"handshakesPerSecond,omitempty"` // answered by the simulated nodes, per agent
	ExchangesSec      float64 `json:"exchangesPerSecond,omitempty"`  // key exchanges, per agent
	FirstPackets      int     `json:"firstPackets,omitempty"`        // pings to a resting peer
	FirstP50Millis    float64 `json:"firstPacketP50Ms,omitempty"`    // their round trip
	FirstP99Millis    float64 `json:"firstPacketP99Ms,omitempty"`
	FirstLost         int     `json:"firstPacketsLost,omitempty"`
	ActiveP50Millis   float64 `json:"activeRttP50Ms,omitempty"` // pings to an awake peer
	ActiveP99Millis   float64 `json:"activeRttP99Ms,omitempty"`
	ActivePings       int     `json:"activePings,omitempty"`
	ActiveLost        int     `json:"activePingsLost,omitempty"`
	StartActiveMillis float64 `json:"startToActiveMs,omitempty"` // an agent restarted → its whole working set answers

	// One Node added, then deleted: what each agent wrote (max over agents).
	AddPeerWrites    int     `json:"addPeerWrites"`
	AddRouteChanges  int     `json:"addRouteChanges"`
	DelPeerWrites    int     `json:"delPeerWrites"`
	DelRouteChanges  int     `json:"delRouteChanges"`
	AddToRouteMillis float64 `json:"addToRouteMs"` // API create → route on every agent's node

	// Churn: ChurnPerSecond Nodes added and as many deleted each second.
	ChurnSeconds        int     `json:"churnSeconds"`
	ChurnPerSecond      int     `json:"churnPerSecond"`
	ChurnChanges        int     `json:"churnChanges"` // Node adds and deletes made
	ChurnCPU            float64 `json:"churnCpuPct"`
	ChurnAPIRequestsSec float64 `json:"churnApiRequestsPerSecond"`
	ChurnWatchKBSec     float64 `json:"churnWatchKBPerSecond"` // API watch bytes read, KB/s
	ChurnPassesSec      float64 `json:"churnPassesPerSecond"`  // reconcile passes
	ChurnPassMillis     float64 `json:"churnPassMeanMs"`       // their mean duration
	ChurnPeerWrites     float64 `json:"churnPeerWritesPerChange"`
	ChurnRouteChanges   float64 `json:"churnRouteChangesPerChange"`
	ChurnP50Millis      float64 `json:"churnP50Ms"`
	ChurnP99Millis      float64 `json:"churnP99Ms"`
	ChurnMaxMillis      float64 `json:"churnMaxMs"`
	ChurnLost           int     `json:"churnLost"` // changes that never reached a data plane
}

// SteadyRSS is the RSS the target is judged on: the most in the steady
// minute, or (results from before it was read) the one reading after it.
func (p ScalePoint) SteadyRSS() float64 {
	return max(p.RSSMiB, p.RSSSteadyMaxMiB)
}

// JudgedRSS is the RSS the target is judged on: the steady minute's, or
// the working set's when that is higher (with live peers talking, an
// agent holds their sessions and their garbage). Not the start's peak: the
// first pass writes every peer once.
func (p ScalePoint) JudgedRSS() float64 {
	return max(p.SteadyRSS(), p.ActiveRSSMiB)
}

// Targets at 1000 nodes (issue 19).
const (
	TargetRSSMiB       = 64
	TargetIdleCPU      = 0.5
	TargetChurnP99Msec = 1000
	TargetFirstP99Msec = 50
	TargetStartActive  = 10000 // ms
)

// WriteScale stores r under dir as scale-<stamp>.{json,md,svg} and returns
// the Markdown.
func WriteScale(r *ScaleRun, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stamp := "scale-" + strings.NewReplacer(":", "", "-", "").Replace(r.Time)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	svg, err := scaleSVG(r)
	if err != nil {
		return "", fmt.Errorf("scale plot: %w", err)
	}
	md := ScaleMarkdown(r, stamp+".svg")
	for name, data := range map[string][]byte{stamp + ".json": b, stamp + ".md": []byte(md), stamp + ".svg": svg} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return md, nil
}

// ScaleMarkdown is the report: one column per size, and each target at
// the largest size met or not.
func ScaleMarkdown(r *ScaleRun, svg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# weft at scale, %s\n\n%s. `make bench-scale`: the lab's API server holds N Node objects (generated keys, pod CIDRs, endpoints); 3 of them run a real agent in Kubernetes mode. Per-agent figures are the worst of the three.\n\n", r.Time, r.Machine)
	if len(r.Sizes) > 0 && r.Sizes[0].Live {
		b.WriteString("The generated nodes are live (`internal/simpeer`, one process): they answer WireGuard handshakes under their keys, the post-quantum key exchange and pings to their pod ranges through the tunnel; they never initiate. Each agent talks to a working set of them (a ping a second to each, one newcomer a second).\n\n")
	} else {
		b.WriteString("The generated nodes are dead (WEFT_SCALE_LIVE=0): their endpoints are on a range where nobody answers.\n\n")
	}
	if r.OnDemandAfter != "" {
		fmt.Fprintf(&b, "On-demand peers: the agents ran with `--on-demand-after %s --on-demand-grace 0` (WEFT_SCALE_ON_DEMAND), so resting peers are off the WireGuard device, not only quiet.\n\n", r.OnDemandAfter)
	}
	b.WriteString("| | " + join(r.Sizes, func(p ScalePoint) string { return fmt.Sprintf("N = %d", p.Nodes) }) + " |\n")
	b.WriteString("|---|" + strings.Repeat("---:|", len(r.Sizes)) + "\n")
	row := func(name string, f func(ScalePoint) string) {
		b.WriteString("| " + name + " | " + join(r.Sizes, f) + " |\n")
	}
	row("start → all peers and routes installed", func(p ScalePoint) string { return fmt.Sprintf("%.1f s", p.ConvergeSeconds) })
	row("start → the agents gossip with each other", func(p ScalePoint) string { return fmt.Sprintf("%.1f s", p.GossipSeconds) })
	row("RSS (of it mapped from the binary)", func(p ScalePoint) string {
		if p.RSSFileMiB == 0 {
			return fmt.Sprintf("%.1f MiB", p.RSSMiB)
		}
		return fmt.Sprintf("%.1f MiB (%.1f)", p.RSSMiB, p.RSSFileMiB)
	})
	row("RSS, most in the steady minute (read each second)", func(p ScalePoint) string {
		if p.RSSSteadyMaxMiB == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f MiB", p.RSSSteadyMaxMiB)
	})
	row("a scrape of /metrics in the steady minute (every 30 s): slowest, size", func(p ScalePoint) string {
		if p.ScrapeKB == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f ms, %.0f KB", p.ScrapeMillis, p.ScrapeKB)
	})
	row("RSS peak since the start", func(p ScalePoint) string {
		if p.RSSPeakMiB == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f MiB", p.RSSPeakMiB)
	})
	row("Go heap in use / live after a GC", func(p ScalePoint) string {
		if p.HeapLiveMiB == 0 {
			return fmt.Sprintf("%.1f MiB", p.HeapMiB)
		}
		return fmt.Sprintf("%.1f / %.1f MiB", p.HeapMiB, p.HeapLiveMiB)
	})
	row("idle CPU, first minute", func(p ScalePoint) string { return fmt.Sprintf("%.2f %%", p.IdleCPUFirstMinute) })
	row("idle CPU, steady (generated peers resting)", func(p ScalePoint) string {
		return fmt.Sprintf("%.2f %% (%d resting)", p.IdleCPUSteady, p.DormantPeers)
	})
	if len(r.Sizes) > 0 && r.Sizes[0].Live {
		row("working set: peers on the device / resting", func(p ScalePoint) string {
			return fmt.Sprintf("%d / %d (set of %d, %d s)", p.ActivePeers, p.RestingPeers, p.ActiveSet, p.ActiveSeconds)
		})
		row("working set: CPU, RSS", func(p ScalePoint) string { return fmt.Sprintf("%.2f %%, %.1f MiB", p.ActiveCPU, p.ActiveRSSMiB) })
		row("working set: handshakes / key exchanges", func(p ScalePoint) string {
			return fmt.Sprintf("%.2f /s / %.3f /s", p.HandshakesSec, p.ExchangesSec)
		})
		row("first packet to a resting peer: RTT p50 / p99 (lost)", func(p ScalePoint) string {
			return fmt.Sprintf("%.1f / %.1f ms (%d of %d)", p.FirstP50Millis, p.FirstP99Millis, p.FirstLost, p.FirstPackets)
		})
		row("ping to an awake peer: RTT p50 / p99 (lost)", func(p ScalePoint) string {
			return fmt.Sprintf("%.2f / %.2f ms (%d of %d)", p.ActiveP50Millis, p.ActiveP99Millis, p.ActiveLost, p.ActivePings)
		})
		row("agent restarted → whole working set answers", func(p ScalePoint) string { return fmt.Sprintf("%.0f ms", p.StartActiveMillis) })
	}
	row("one Node added: peer writes / route changes", func(p ScalePoint) string {
		return fmt.Sprintf("%d / %d", p.AddPeerWrites, p.AddRouteChanges)
	})
	row("one Node deleted: peer writes / route changes", func(p ScalePoint) string {
		return fmt.Sprintf("%d / %d", p.DelPeerWrites, p.DelRouteChanges)
	})
	row("one Node added: API create → route on all 3", func(p ScalePoint) string { return fmt.Sprintf("%.0f ms", p.AddToRouteMillis) })
	row("churn: CPU", func(p ScalePoint) string { return fmt.Sprintf("%.1f %%", p.ChurnCPU) })
	row("churn: agent API requests", func(p ScalePoint) string { return fmt.Sprintf("%.2f /s", p.ChurnAPIRequestsSec) })
	row("churn: API watch bytes read", func(p ScalePoint) string { return fmt.Sprintf("%.1f KB/s", p.ChurnWatchKBSec) })
	row("churn: reconcile passes, mean pass", func(p ScalePoint) string {
		return fmt.Sprintf("%.1f /s, %.0f ms", p.ChurnPassesSec, p.ChurnPassMillis)
	})
	row("churn: peer writes / route changes per Node change", func(p ScalePoint) string {
		return fmt.Sprintf("%.2f / %.2f", p.ChurnPeerWrites, p.ChurnRouteChanges)
	})
	row("churn: change → data plane p50 / p99 / max", func(p ScalePoint) string {
		return fmt.Sprintf("%.0f / %.0f / %.0f ms", p.ChurnP50Millis, p.ChurnP99Millis, p.ChurnMaxMillis)
	})
	row("churn: changes made / never applied", func(p ScalePoint) string { return fmt.Sprintf("%d / %d", p.ChurnChanges, p.ChurnLost) })
	if len(r.Sizes) > 0 {
		p := r.Sizes[len(r.Sizes)-1]
		met := func(ok bool) string {
			if ok {
				return "met"
			}
			return "**not met**"
		}
		fmt.Fprintf(&b, "\nTargets at N = %d:\n\n", p.Nodes)
		fmt.Fprintf(&b, "- RSS ≤ %d MiB, at rest and with the working set: %s (%.1f MiB; at rest %.1f)\n", TargetRSSMiB, met(p.JudgedRSS() <= TargetRSSMiB), p.JudgedRSS(), p.SteadyRSS())
		fmt.Fprintf(&b, "- idle CPU ≤ %.1f %% of a core: %s (steady %.2f %%; first minute %.2f %%)\n", TargetIdleCPU, met(p.IdleCPUSteady <= TargetIdleCPU), p.IdleCPUSteady, p.IdleCPUFirstMinute)
		// A deleted Node whose peer rests off the device needs no peer
		// write; with on-demand peers an added one starts resting (none).
		add := p.AddPeerWrites == 1
		if r.OnDemandAfter != "" {
			add = p.AddPeerWrites <= 1
		}
		one := add && p.AddRouteChanges == 1 && p.DelPeerWrites <= 1 && p.DelRouteChanges == 1
		fmt.Fprintf(&b, "- one changed Node → at most one peer write and one route change: %s (add %d/%d, delete %d/%d)\n", met(one), p.AddPeerWrites, p.AddRouteChanges, p.DelPeerWrites, p.DelRouteChanges)
		fmt.Fprintf(&b, "- change → data plane p99 ≤ 1 s during churn: %s (%.0f ms, %d never applied)\n", met(p.ChurnP99Millis <= TargetChurnP99Msec && p.ChurnLost == 0), p.ChurnP99Millis, p.ChurnLost)
		if p.Live {
			// The extra delay of a first packet over an awake peer's round trip.
			extra := p.FirstP99Millis - p.ActiveP50Millis
			fmt.Fprintf(&b, "- first packet to a resting peer delayed ≤ %d ms p99, none lost: %s (%.1f ms over an awake peer's RTT, %d of %d lost)\n", TargetFirstP99Msec, met(extra <= TargetFirstP99Msec && p.FirstLost == 0 && p.FirstPackets > 0), extra, p.FirstLost, p.FirstPackets)
			fmt.Fprintf(&b, "- restart → every active peer reachable ≤ 10 s: %s (%.1f s)\n", met(p.StartActiveMillis > 0 && p.StartActiveMillis <= TargetStartActive), p.StartActiveMillis/1000)
		}
	}
	if svg != "" {
		fmt.Fprintf(&b, "\n![each figure against N](%s)\n", svg)
	}
	return b.String()
}

func join(ps []ScalePoint, f func(ScalePoint) string) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return strings.Join(out, " | ")
}

// scaleSVG draws each figure against N, both axes logarithmic, one panel each.
func scaleSVG(r *ScaleRun) ([]byte, error) {
	figs := []struct {
		title string
		f     func(ScalePoint) float64
	}{
		{"start → converged, s", func(p ScalePoint) float64 { return p.ConvergeSeconds }},
		{"RSS, MiB", func(p ScalePoint) float64 { return p.RSSMiB }},
		{"Go heap, MiB", func(p ScalePoint) float64 { return p.HeapMiB }},
		{"idle CPU steady, % core", func(p ScalePoint) float64 { return p.IdleCPUSteady }},
		{"idle CPU first minute, % core", func(p ScalePoint) float64 { return p.IdleCPUFirstMinute }},
		{"churn CPU, % core", func(p ScalePoint) float64 { return p.ChurnCPU }},
		{"churn change → data plane p99, ms", func(p ScalePoint) float64 { return p.ChurnP99Millis }},
		{"churn API requests /s", func(p ScalePoint) float64 { return p.ChurnAPIRequestsSec }},
	}
	const cols = 4
	rows := (len(figs) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i, fg := range figs {
		p := plot.New()
		p.Title.Text = fg.title
		p.X.Label.Text = "nodes"
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		var pts plotter.XYs
		for _, s := range r.Sizes {
			// A log axis has no 0: a figure that is 0 is drawn at 0.001.
			pts = append(pts, plotter.XY{X: float64(s.Nodes), Y: max(fg.f(s), 0.001)})
		}
		// Ranges set here: gonum's own would start a one-point axis at 0.
		if len(pts) > 0 {
			xmin, xmax, ymin, ymax := plotter.XYRange(pts)
			p.X.Min, p.X.Max = xmin/1.5, xmax*1.5
			p.Y.Min, p.Y.Max = ymin/2, ymax*2
		}
		if len(pts) > 0 {
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			l.Color, sc.Color = palette[0], palette[0]
			p.Add(l, sc)
		}
		if plots[i/cols] == nil {
			plots[i/cols] = make([]*plot.Plot, cols)
		}
		plots[i/cols][i%cols] = p
	}
	w, h := 13*vg.Inch, vg.Length(rows)*3*vg.Inch
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	canvases := plot.Align(plots, draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}, dc)
	for i := range plots {
		for j, p := range plots[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
