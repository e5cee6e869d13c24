package bench

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config says how much to measure.
type Config struct {
	BinDir string
	// ControlPlaneDir holds etcd, kube-apiserver and kube-proxy (make
	// controlplane); "" leaves out the pod-to-Service path.
	ControlPlaneDir string
	Reps            int
	Duration        time.Duration // of each iperf3 and request/response run
	UDPRate         string        // iperf3 -b for the UDP run; "auto": the highest of udpRates veth carries with < 1 % loss
	Pings           int           // per repetition
	CNIPods         int           // ADDs (then DELs) per CNI measurement
	// Pairs is how many back-to-back runs of the target paths (upstream
	// wireguard-go and weft) decide the targets; 0 decides them on the
	// repetitions.
	Pairs int
	Log   io.Writer
}

// Results is everything one run measured.
type Results struct {
	Time        string       `json:"time"`
	Kernel      string       `json:"kernel"`
	CPUs        int          `json:"cpus"`
	Reps        int          `json:"reps"`
	Duration    string       `json:"duration"`
	Pairs       int          `json:"pairs,omitempty"`
	UDPRate     string       `json:"udpRate"`
	Paths       []PathResult `json:"paths"`
	CNI         []CNIStats   `json:"cni"`
	Convergence Summary      `json:"convergenceMs"`
	Targets     []Target     `json:"targets"`
	// Ceiling: what one core of this machine seals with WireGuard's cipher
	// (measured before the lab starts, while the machine is idle).
	Ceiling []SealRate `json:"sealPerCore"`
	// AgentProfiles: where the two weft agents' CPU time went during the
	// pod-to-pod 1-stream TCP runs.
	AgentProfiles []*AgentProfile `json:"agentProfiles,omitempty"`
}

// PathResult holds one path's figures; throughput in Gbit/s, times in ms.
type PathResult struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	TCP1        Summary  `json:"tcp1Gbps"`
	TCP4        Summary  `json:"tcp4Gbps"`
	Flows4      Summary  `json:"flows4Gbps"` // MultiFlows pairs at once, aggregate
	UDP         Summary  `json:"udpGbps"`
	UDPLoss     Summary  `json:"udpLossPercent"`
	UDPJitter   Summary  `json:"udpJitterMs"`
	RTTP50      Summary  `json:"rttP50Ms"`
	RTTP99      Summary  `json:"rttP99Ms"`
	RR          Summary  `json:"requestResponsePerSecond"`
	CPUPerGbit  *Summary `json:"cpuSecondsPerGbit,omitempty"`
	// RSSMiB: both ends' userspace processes after the first 1-stream run,
	// before any UDP run has filled their queues; PeakRSSMiB: their peak
	// over the whole run (VmHWM), UDP overload included.
	RSSMiB     *Summary  `json:"rssMiB,omitempty"`
	PeakRSSMiB float64   `json:"peakRssMiB,omitempty"`
	RTTs       []float64 `json:"rttsMs"`
	// The target pairs (Config.Pairs): short runs taken back to back with
	// the baseline's, the figures the targets are decided on.
	PairTCP1   Summary `json:"pairTcp1Gbps,omitzero"`
	PairRTTP50 Summary `json:"pairRttP50Ms,omitzero"`
}

// CNIStats is one plugin chain at one parallelism.
type CNIStats struct {
	Chain    string  `json:"chain"`
	Parallel int     `json:"parallel"`
	N        int     `json:"n"`
	AddP50   float64 `json:"addP50Ms"`
	AddP99   float64 `json:"addP99Ms"`
	DelP50   float64 `json:"delP50Ms"`
	DelP99   float64 `json:"delP99Ms"`
}

// Target is one goal the report checks. Ratios of paths are paired: each
// repetition's weft figure over the baseline's of the same repetition,
// measured back to back, so that the machine's drift between repetitions
// cancels; Ratio is their median, Min and Max their range.
type Target struct {
	Name     string  `json:"name"`
	Ratio    float64 `json:"ratio"`
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	Limit    string  `json:"limit"`
	Met      bool    `json:"met"`
	Detailed bool    `json:"paired,omitempty"`
}

// Run builds the lab, measures and tears the lab down.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, format+"\n", args...) }
	ceiling := sealCeiling(time.Second)
	for _, c := range ceiling {
		logf("== one core seals %.1f Gbit/s of %d-byte packets with ChaCha20-Poly1305", c.Gbps, c.Bytes)
	}
	logf("== building the bench lab (veth, VXLAN, upstream wireguard-go, Tailscale's fork, weft, weft to a Service)")
	if cfg.ControlPlaneDir == "" {
		logf("   no control plane binaries: the pod-to-Service path is left out")
	}
	lab, err := NewLab(ctx, cfg.BinDir, cfg.ControlPlaneDir)
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	kernel, _ := exec.Command("uname", "-r").Output()
	res := &Results{Time: time.Now().UTC().Format(time.RFC3339), Kernel: strings.TrimSpace(string(kernel)),
		CPUs: runtime.NumCPU(), Reps: cfg.Reps, Duration: cfg.Duration.String(), UDPRate: cfg.UDPRate, Ceiling: ceiling}

	// Servers for the whole run, bound to each path's server address, and
	// one per multi-flow pair.
	for _, p := range lab.Paths {
		srvs := []*exec.Cmd{
			p.serverCommand(ctx, "iperf3", "-s", "-B", p.Server.String()),
			p.serverCommand(ctx, filepath.Join(cfg.BinDir, "weft-bench"), "rr-server", "--listen", p.Server.String()+":5202"),
		}
		for _, f := range p.Flows {
			srvs = append(srvs, p.onCPU(ctx, f.ServerNS, serverCPU, "iperf3", "-s", "-B", f.Server.String(), "-p", fmt.Sprint(f.Port)))
		}
		for _, srv := range srvs {
			if err := srv.Start(); err != nil {
				return nil, err
			}
			defer func() { srv.Process.Kill(); srv.Wait() }()
		}
	}

	if cfg.UDPRate == "auto" {
		if cfg.UDPRate, err = calibrateUDP(ctx, lab, cfg.Duration, logf); err != nil {
			return nil, err
		}
		res.UDPRate = cfg.UDPRate
	}
	type acc struct{ tcp1, tcp4, flows, udp, loss, jitter, p50, p99, rr, cpu, rss, rtts []float64 }
	all := make([]acc, len(lab.Paths))
	profiles := []*AgentProfile{{Side: "client"}, {Side: "server"}}
	// Each measurement runs on every path back to back before the next
	// measurement starts, and every other repetition takes the paths in
	// reverse order: a path's figure and its baseline's are taken seconds
	// apart, and neither always goes first.
	measures := []struct {
		name string
		run  func(p *Path, a *acc) error
	}{
		{"TCP 1 stream", func(p *Path, a *acc) error {
			var wait func() error
			if p.Name == "weft" {
				wait = lab.profileAgents(ctx, profiles, cfg.Duration)
			}
			t, err := Iperf(ctx, p, cfg.Duration)
			if wait != nil {
				if perr := wait(); err == nil {
					err = perr
				}
			}
			a.tcp1 = append(a.tcp1, t.BitsPerSecond/1e9)
			if t.CPUSeconds > 0 && t.Bytes > 0 {
				a.cpu = append(a.cpu, t.CPUSeconds/(t.Bytes*8/1e9))
			}
			if t.RSSMiB > 0 && len(a.rss) == 0 {
				a.rss = append(a.rss, t.RSSMiB)
			}
			return err
		}},
		{"TCP 4 streams", func(p *Path, a *acc) error {
			t, err := Iperf(ctx, p, cfg.Duration, "-P", "4")
			a.tcp4 = append(a.tcp4, t.BitsPerSecond/1e9)
			return err
		}},
		{fmt.Sprintf("%d pairs at once", MultiFlows), func(p *Path, a *acc) error {
			t, err := IperfFlows(ctx, p, cfg.Duration)
			a.flows = append(a.flows, t.BitsPerSecond/1e9)
			return err
		}},
		{"UDP at " + cfg.UDPRate, func(p *Path, a *acc) error {
			u, err := Iperf(ctx, p, cfg.Duration, "-u", "-b", cfg.UDPRate)
			a.udp, a.loss, a.jitter = append(a.udp, u.BitsPerSecond/1e9), append(a.loss, u.LostPercent), append(a.jitter, u.JitterMs)
			return err
		}},
		{"ping", func(p *Path, a *acc) error {
			if p.NoICMP {
				return nil
			}
			rtts, err := pingRTTs(ctx, p, cfg.Pings)
			sorted := slices.Sorted(slices.Values(rtts))
			a.p50, a.p99 = append(a.p50, quantile(sorted, 0.5)), append(a.p99, quantile(sorted, 0.99))
			a.rtts = append(a.rtts, rtts...)
			return err
		}},
		{"TCP request/response", func(p *Path, a *acc) error {
			rr, err := requestResponse(ctx, cfg.BinDir, p, cfg.Duration)
			a.rr = append(a.rr, rr)
			return err
		}},
	}
	// The rest of the run after the repetitions, for the estimate: the
	// target pairs (a 3 s stream and 100 pings 10 ms apart on each target
	// path), the CNI runs and the convergence runs.
	after := time.Duration(cfg.Pairs*len(targetPaths))*(3*time.Second+time.Second+time.Second) + time.Duration(cfg.Reps)*40*time.Second
	started, steps := time.Now(), cfg.Reps*len(measures)
	for rep := 1; rep <= cfg.Reps; rep++ {
		order := make([]int, len(lab.Paths))
		for i := range order {
			order[i] = i
		}
		if rep%2 == 0 {
			slices.Reverse(order)
		}
		for j, m := range measures {
			done := (rep-1)*len(measures) + j
			eta := ""
			if done > 0 {
				elapsed := time.Since(started)
				left := elapsed*time.Duration(steps-done)/time.Duration(done) + after
				eta = fmt.Sprintf(" (%s in, about %s left)", elapsed.Round(time.Second), left.Round(10*time.Second))
			}
			logf("   rep %d/%d: %s%s", rep, cfg.Reps, m.name, eta)
			for _, i := range order {
				if err := m.run(lab.Paths[i], &all[i]); err != nil {
					return nil, err
				}
			}
		}
	}
	pairs, err := targetPairs(ctx, lab, cfg, logf)
	if err != nil {
		return nil, err
	}
	res.Pairs = cfg.Pairs
	for i, p := range lab.Paths {
		a := all[i]
		pr := PathResult{Name: p.Name, Description: p.Description, TCP1: summarize(a.tcp1), TCP4: summarize(a.tcp4), Flows4: summarize(a.flows),
			UDP: summarize(a.udp), UDPLoss: summarize(a.loss), UDPJitter: summarize(a.jitter),
			RTTP50: summarize(a.p50), RTTP99: summarize(a.p99), RR: summarize(a.rr), RTTs: a.rtts}
		if p.NoICMP { // no pings: no RTT (and no NaN in the JSON)
			pr.RTTP50, pr.RTTP99 = Summary{}, Summary{}
		}
		if len(a.cpu) > 0 {
			s := summarize(a.cpu)
			pr.CPUPerGbit = &s
		}
		if len(a.rss) > 0 {
			s := summarize(a.rss)
			pr.RSSMiB, pr.PeakRSSMiB = &s, p.peakRSSMiB()
		}
		if pa, ok := pairs[p.Name]; ok {
			pr.PairTCP1, pr.PairRTTP50 = summarize(pa.tcp1), summarize(pa.p50)
		}
		res.Paths = append(res.Paths, pr)
	}

	logf("== CNI ADD/DEL through libcni: weft-cni vs ptp + host-local")
	n1 := lab.weftNodes[0]
	lists, err := cniLists(n1)
	if err != nil {
		return nil, err
	}
	for _, parallel := range []int{1, 20} {
		for _, chain := range []string{"weft-cni", "ptp+host-local"} {
			var r CNIResult
			for rep := 0; rep < cfg.Reps; rep++ {
				one, err := benchCNI(ctx, n1, cfg.BinDir, lists[chain], cfg.CNIPods, parallel)
				if err != nil {
					return nil, err
				}
				r.AddMs, r.DelMs = append(r.AddMs, one.AddMs...), append(r.DelMs, one.DelMs...)
			}
			add, del := slices.Sorted(slices.Values(r.AddMs)), slices.Sorted(slices.Values(r.DelMs))
			res.CNI = append(res.CNI, CNIStats{Chain: chain, Parallel: parallel, N: len(add),
				AddP50: quantile(add, 0.5), AddP99: quantile(add, 0.99), DelP50: quantile(del, 0.5), DelP99: quantile(del, 0.99)})
			logf("   %s, %d at a time: ADD p50 %.1f ms, DEL p50 %.1f ms", chain, parallel, quantile(add, 0.5), quantile(del, 0.5))
		}
	}

	logf("== convergence: a new node's start to the first packet from every node into its pod range")
	var conv []float64
	for rep := 0; rep < cfg.Reps; rep++ {
		d, err := lab.convergence(ctx, fmt.Sprintf("new%d", rep+1))
		if err != nil {
			return nil, err
		}
		conv = append(conv, ms(d))
		logf("   new node %d: %v", rep+1, d.Round(time.Millisecond))
	}
	res.Convergence = summarize(conv)
	for _, p := range profiles {
		p.summarize()
	}
	res.AgentProfiles = profiles
	res.Targets = targets(res)
	return res, nil
}

// udpRates are the UDP rates calibrateUDP tries, highest first.
var udpRates = []string{"4G", "2G", "1G", "500M", "200M", "100M"}

// calibrateUDP is the highest of udpRates at which the raw underlay (veth)
// loses under 1 % of the datagrams: the UDP run then compares every path at
// a rate the machine itself carries, and a path's loss is its own.
func calibrateUDP(ctx context.Context, lab *Lab, d time.Duration, logf func(string, ...any)) (string, error) {
	var veth *Path
	for _, p := range lab.Paths {
		if p.Name == "veth" {
			veth = p
		}
	}
	if veth == nil {
		return "", fmt.Errorf("no veth path to calibrate the UDP rate on")
	}
	for _, rate := range udpRates {
		u, err := Iperf(ctx, veth, d, "-u", "-b", rate)
		if err != nil {
			return "", err
		}
		logf("   UDP calibration on veth: %s loses %.2f %%", rate, u.LostPercent)
		if u.LostPercent < 1 {
			return rate, nil
		}
	}
	return udpRates[len(udpRates)-1], nil
}
