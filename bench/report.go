package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Write stores the run under dir as <stamp>.json, <stamp>.md and two SVG
// plots, and copies the table and plots to latest.md, throughput.svg and
// latency.svg for the README. It returns the Markdown.
func Write(r *Results, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stamp := strings.NewReplacer(":", "", "-", "").Replace(r.Time)
	for _, p := range r.AgentProfiles {
		if p.merged == nil {
			continue
		}
		p.File = stamp + "-agent-" + p.Side + ".pprof"
		if err := p.write(filepath.Join(dir, p.File)); err != nil {
			return "", err
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	md := Markdown(r, stamp)
	tput, err := throughputSVG(r)
	if err != nil {
		return "", fmt.Errorf("throughput plot: %w", err)
	}
	lat, err := latencySVG(r)
	if err != nil {
		return "", fmt.Errorf("latency plot: %w", err)
	}
	files := map[string][]byte{
		stamp + ".json":           b,
		stamp + ".md":             []byte(md),
		stamp + "-throughput.svg": tput,
		stamp + "-latency.svg":    lat,
		"latest.md":               []byte(md),
		"throughput.svg":          tput,
		"latency.svg":             lat,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return md, nil
}

func rng(s Summary, f string) string {
	if len(s.Runs) == 0 {
		return "–"
	}
	if len(s.Runs) == 1 {
		return fmt.Sprintf(f, s.Median)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Median, s.Min, s.Max)
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// Markdown renders the run as tables: medians with min–max over the repetitions.
func Markdown(r *Results, stamp string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "### weft bench %s\n\n", r.Time)
	pairs := ""
	if r.Pairs > 0 {
		pairs = fmt.Sprintf("; the wireguard-go targets on %d back-to-back pairs of short runs", r.Pairs)
	}
	fmt.Fprintf(&sb, "Kernel %s, %d CPUs; %d repetitions of %s each; median (min–max)%s. `make bench` wrote this.\n\n", r.Kernel, r.CPUs, r.Reps, r.Duration, pairs)
	wg, ts, veth := r.path("wireguard-go"), r.path("wireguard-go-tailscale"), r.path("veth")
	sb.WriteString("| path | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | 4 pairs at once Gbit/s | UDP at " + r.UDPRate + ": Gbit/s, loss %, jitter ms | RTT p50 / p99 ms | TCP req/resp per s | CPU s per Gbit | memory MiB: after 1 stream / peak | 1 stream vs wireguard-go | vs Tailscale's | vs veth |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Paths {
		cpu, mem := "kernel", "kernel"
		if p.CPUPerGbit != nil {
			cpu = rng(*p.CPUPerGbit, "%.2f")
		}
		if p.RSSMiB != nil {
			mem = memory(&p)
		}
		vsWG, vsTS, vsVeth := "–", "–", "–"
		if wg != nil {
			vsWG = ratio(p.TCP1.Median, wg.TCP1.Median)
		}
		if ts != nil {
			vsTS = ratio(p.TCP1.Median, ts.TCP1.Median)
		}
		if veth != nil {
			vsVeth = ratio(p.TCP1.Median, veth.TCP1.Median)
		}
		fmt.Fprintf(&sb, "| **%s** — %s | %s | %s | %s | %s, %s, %s | %s / %s | %s | %s | %s | %s | %s | %s |\n",
			p.Name, p.Description, rng(p.TCP1, "%.2f"), rng(p.TCP4, "%.2f"), rng(p.Flows4, "%.2f"),
			rng(p.UDP, "%.2f"), rng(p.UDPLoss, "%.2f"), rng(p.UDPJitter, "%.3f"),
			rng(p.RTTP50, "%.3f"), rng(p.RTTP99, "%.3f"), rng(p.RR, "%.0f"), cpu, mem, vsWG, vsTS, vsVeth)
	}
	sb.WriteString(infraBuilderTable(r))
	if len(r.Ceiling) > 0 {
		sb.WriteString("\nThe ceiling: one core of this machine seals")
		for i, c := range r.Ceiling {
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, " %.1f Gbit/s of %d-byte packets", c.Gbps, c.Bytes)
		}
		sb.WriteString(" with ChaCha20-Poly1305 (x/crypto, as wireguard-go)")
		if w := r.path("weft"); w != nil && r.Ceiling[0].Gbps > 0 {
			fmt.Fprintf(&sb, "; weft's 1-stream pod-to-pod figure is %.0f %% of the first", 100*w.TCP1.Median/r.Ceiling[0].Gbps)
		}
		fmt.Fprintf(&sb, ". Both ends of every path run on this machine's %d CPUs.\n", r.CPUs)
	}
	if len(r.CNI) > 0 {
		sb.WriteString("\n| CNI chain (libcni) | at a time | ADDs | ADD p50 / p99 ms | DEL p50 / p99 ms | ADD p50 vs ptp + host-local |\n|---|---|---|---|---|---|\n")
		for _, c := range r.CNI {
			base := r.cni("ptp+host-local", c.Parallel)
			vs := "–"
			if base != nil {
				vs = ratio(c.AddP50, base.AddP50)
			}
			fmt.Fprintf(&sb, "| %s | %d | %d | %.1f / %.1f | %.1f / %.1f | %s |\n", c.Chain, c.Parallel, c.N, c.AddP50, c.AddP99, c.DelP50, c.DelP99, vs)
		}
	}
	if len(r.Convergence.Runs) > 0 {
		fmt.Fprintf(&sb, "\nConvergence (a new node's agent start → first packet from every node into its pod range): %s ms.\n\n", rng(r.Convergence, "%.0f"))
	}
	if len(r.Targets) > 0 {
		sb.WriteString("| target | this run | goal | met |\n|---|---|---|---|\n")
	}
	for _, t := range r.Targets {
		met := "**no**"
		if t.Met {
			met = "yes"
		}
		figure := fmt.Sprintf("%.2f", t.Ratio)
		if t.Detailed {
			figure = fmt.Sprintf("%.2f (%.2f–%.2f)", t.Ratio, t.Min, t.Max)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", t.Name, figure, t.Limit, met)
	}
	if len(r.AgentProfiles) > 0 {
		sb.WriteString("\nWhere the weft agents' CPU went during the pod-to-pod 1-stream TCP runs (their /debug/pprof/profile, all repetitions):\n\n")
		sb.WriteString("| agent | CPU s sampled | wireguard-go data path | Go runtime (GC, scheduler) | weft's own code | other libraries | profile |\n|---|---|---|---|---|---|---|\n")
		for _, p := range r.AgentProfiles {
			pct := func(part string) string { return fmt.Sprintf("%.1f %%", 100*p.Shares[part]) }
			fmt.Fprintf(&sb, "| %s | %.1f | %s | %s | %s | %s | `%s` |\n", p.Side, p.Seconds,
				pct(partWireGuard), pct(partRuntime), pct(partWeft), pct(partOther), p.File)
		}
	}
	if stamp != "" {
		fmt.Fprintf(&sb, "\n![throughput](%s-throughput.svg) ![latency](%s-latency.svg)\n", stamp, stamp)
	}
	return sb.String()
}

// ParseIperfLog reads a log of iperf3 -J documents, each after a
// "=== tcp1|tcp4|udp" line (bench/k8s), into a one-path Results.
func ParseIperfLog(name string, log []byte) (*Results, error) {
	var tcp1, tcp4, udp, loss, jitter []float64
	sections := strings.Split(string(log), "=== ")
	for _, sec := range sections[1:] {
		kind, body, _ := strings.Cut(sec, "\n")
		// One JSON document per section; a failed try's "--- " line may follow it.
		var r iperfJSON
		if err := json.NewDecoder(strings.NewReader(body)).Decode(&r); err != nil {
			return nil, fmt.Errorf("%s run: %v", kind, err)
		}
		if r.Error != "" {
			return nil, fmt.Errorf("%s run: %s", kind, r.Error)
		}
		switch strings.TrimSpace(kind) {
		case "tcp1":
			tcp1 = append(tcp1, r.End.SumReceived.BitsPerSecond/1e9)
		case "tcp4":
			tcp4 = append(tcp4, r.End.SumReceived.BitsPerSecond/1e9)
		case "udp":
			udp, loss, jitter = append(udp, r.End.Sum.BitsPerSecond/1e9), append(loss, r.End.Sum.LostPercent), append(jitter, r.End.Sum.JitterMs)
		}
	}
	if len(tcp1) == 0 {
		return nil, fmt.Errorf("no \"=== tcp1\" run in the log")
	}
	return &Results{Reps: len(tcp1), Duration: "5s", UDPRate: "500M", Paths: []PathResult{{
		Name: name, Description: "in-cluster iperf3 pair", TCP1: summarize(tcp1), TCP4: summarize(tcp4),
		UDP: summarize(udp), UDPLoss: summarize(loss), UDPJitter: summarize(jitter)}}}, nil
}

// memory is p's RSS after its first 1-stream run and its peak, in MiB.
func memory(p *PathResult) string {
	return fmt.Sprintf("%.0f / %.0f", p.RSSMiB.Median, p.PeakRSSMiB)
}

// infraBuilderTable is the run in the shape of the InfraBuilder CNI
// benchmark's results: per data path, TCP and UDP, single and multiple
// streams, pod to pod and pod to Service, with CPU and memory. weft's row
// joins its pod-to-pod and pod-to-Service paths; the anchors are node to
// node (no pods, no Service) and say so.
func infraBuilderTable(r *Results) string {
	var sb strings.Builder
	sb.WriteString("\nThe same run in the InfraBuilder benchmark's shape (Gbit/s, medians; multi = 4 streams on one connection pair / 4 pod pairs at once; CPU s per Gbit and memory from the 1-stream runs, both ends):\n\n")
	sb.WriteString("| data path | scope | P2P TCP single | P2P TCP multi (4 streams) | P2P TCP 4 pairs | P2P UDP (loss %) | P2S TCP single | P2S TCP 4 pairs | P2S UDP (loss %) | CPU s per Gbit (P2P / P2S) | memory MiB (after 1 stream / peak) |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	// Medians only: the first table has the ranges.
	med := func(s Summary) string {
		if len(s.Runs) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", s.Median)
	}
	udp := func(p *PathResult) string {
		if len(p.UDP.Runs) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f (%.1f)", p.UDP.Median, p.UDPLoss.Median)
	}
	cost := func(p *PathResult) (string, string) {
		if p.CPUPerGbit == nil {
			return "kernel", "kernel"
		}
		mem := "–"
		if p.RSSMiB != nil {
			mem = memory(p)
		}
		return fmt.Sprintf("%.2f", p.CPUPerGbit.Median), mem
	}
	for _, p := range r.Paths {
		if p.Name == "weft-service" || p.Name == "weft-node" {
			continue // in weft's row; weft-node is the anchors' shape of weft
		}
		scope, p2s, p2sFlows, p2sUDP := "node to node", "–", "–", "–"
		cpu, mem := cost(&p)
		if strings.HasPrefix(p.Name, "weft") {
			scope = "pod to pod"
			if svc := r.path("weft-service"); p.Name == "weft" && svc != nil {
				scope = "pod to pod, pod to Service"
				p2s, p2sFlows, p2sUDP = med(svc.TCP1), med(svc.Flows4), udp(svc)
				c, _ := cost(svc)
				cpu += " / " + c
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Name, scope,
			med(p.TCP1), med(p.TCP4), med(p.Flows4), udp(&p), p2s, p2sFlows, p2sUDP, cpu, mem)
	}
	sb.WriteString("\nInfraBuilder 2024 (kernel WireGuard between two bare-metal servers on 40 GbE) published 8.7–9.1 (Cilium), ~8 (Calico), 8.5 (Antrea) Gbit/s P2P TCP single for its encrypted CNIs; this machine runs both ends on 2 shared cores, so compare ratios to the same-run anchors, not those figures.\n")
	return sb.String()
}
