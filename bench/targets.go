package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The paths the targets compare: the baselines first (upstream
// wireguard-go and Tailscale's fork, node to node).
var targetPaths = []string{"wireguard-go", "wireguard-go-tailscale", "weft-node", "weft"}

// The goals of the performance issue (29), for weft pod to pod and node to
// node (medians of the back-to-back pairs): 1-stream TCP at least 1.5×
// upstream wireguard-go node to node and at least Tailscale's fork, RTT
// p50 no more than upstream's.
const (
	goalOverUpstream  = 1.5
	goalOverTailscale = 1.0
	goalRTT           = 1.0
	goalCPU           = 0.7 // CPU seconds per Gbit/s, both ends, over upstream's
)

type pairRuns struct{ tcp1, p50 []float64 }

// targetPairs runs the target paths back to back cfg.Pairs times, in
// alternating order: a 3-second TCP stream each, then 100 pings each. With
// the noise of a shared machine (±20 % between runs here), a handful of
// repetitions cannot tell 0.95 from 1.05; twenty short pairs narrow it.
func targetPairs(ctx context.Context, lab *Lab, cfg Config, logf func(string, ...any)) (map[string]*pairRuns, error) {
	out := map[string]*pairRuns{}
	if cfg.Pairs == 0 {
		return out, nil
	}
	var paths []*Path
	for _, name := range targetPaths {
		for _, p := range lab.Paths {
			if p.Name == name {
				paths = append(paths, p)
				out[name] = &pairRuns{}
			}
		}
	}
	logf("== target pairs: %d back-to-back runs of %s (TCP 1 stream, 3 s; 100 pings)", cfg.Pairs, strings.Join(targetPaths, ", "))
	for i := 0; i < cfg.Pairs; i++ {
		order := slices.Clone(paths)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			t, err := Iperf(ctx, p, 3*time.Second)
			if err != nil {
				return nil, err
			}
			out[p.Name].tcp1 = append(out[p.Name].tcp1, t.BitsPerSecond/1e9)
		}
		for _, p := range order {
			rtts, err := pingRTTs(ctx, p, 100)
			if err != nil {
				return nil, err
			}
			out[p.Name].p50 = append(out[p.Name].p50, quantile(slices.Sorted(slices.Values(rtts)), 0.5))
		}
	}
	return out, nil
}

// profileAgents starts CPU profiles of the client and the server agent of
// the weft path, over the middle of a run of d; the returned function
// waits for them and adds them to profiles.
func (l *Lab) profileAgents(ctx context.Context, profiles []*AgentProfile, d time.Duration) func() error {
	errs := make(chan error, len(profiles))
	for i, prof := range profiles {
		go func() {
			select {
			case <-time.After(500 * time.Millisecond): // iperf3 connects and ramps up
			case <-ctx.Done():
			}
			p, err := profileAgent(ctx, l.weftNodes[i], d-time.Second)
			if err == nil {
				err = prof.add(p)
			}
			errs <- err
		}()
	}
	return func() error {
		var first error
		for range profiles {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// paired summarizes a's repetitions divided by b's, repetition by repetition.
func paired(a, b Summary) Summary {
	var rs []float64
	for i := range min(len(a.Runs), len(b.Runs)) {
		if b.Runs[i] > 0 {
			rs = append(rs, a.Runs[i]/b.Runs[i])
		}
	}
	return summarize(rs)
}

func (r *Results) path(name string) *PathResult {
	for i := range r.Paths {
		if r.Paths[i].Name == name {
			return &r.Paths[i]
		}
	}
	return nil
}

func (r *Results) cni(chain string, parallel int) *CNIStats {
	for i := range r.CNI {
		if r.CNI[i].Chain == chain && r.CNI[i].Parallel == parallel {
			return &r.CNI[i]
		}
	}
	return nil
}

// targets checks the goals of the bench issue against this run's figures.
func targets(r *Results) []Target {
	var out []Target
	wg, ts := r.path("wireguard-go"), r.path("wireguard-go-tailscale")
	// ratio is a's throughput and RTT over b's: paired by back-to-back pair
	// when there are pairs, else by repetition.
	ratio := func(a, b *PathResult) (tcp, rtt Summary, how string) {
		if len(a.PairTCP1.Runs) > 0 && len(b.PairTCP1.Runs) > 0 {
			tcp, rtt = paired(a.PairTCP1, b.PairTCP1), paired(a.PairRTTP50, b.PairRTTP50)
			return tcp, rtt, fmt.Sprintf("%d back-to-back pairs", len(tcp.Runs))
		}
		return paired(a.TCP1, b.TCP1), paired(a.RTTP50, b.RTTP50), "repetitions"
	}
	for _, name := range []string{"weft", "weft-node"} {
		weft := r.path(name)
		if weft == nil || wg == nil {
			continue
		}
		tcp, rtt, how := ratio(weft, wg)
		out = append(out, Target{Name: fmt.Sprintf("%s throughput ÷ upstream wireguard-go node to node (1 TCP stream, %s)", name, how), Ratio: tcp.Median,
			Min: tcp.Min, Max: tcp.Max, Limit: fmt.Sprintf("≥ %.1f", goalOverUpstream), Met: tcp.Median >= goalOverUpstream, Detailed: true})
		if ts != nil {
			tcp, _, how := ratio(weft, ts)
			out = append(out, Target{Name: fmt.Sprintf("%s throughput ÷ Tailscale's wireguard-go node to node (1 TCP stream, %s)", name, how), Ratio: tcp.Median,
				Min: tcp.Min, Max: tcp.Max, Limit: fmt.Sprintf("≥ %.1f", goalOverTailscale), Met: tcp.Median >= goalOverTailscale, Detailed: true})
		}
		out = append(out, Target{Name: fmt.Sprintf("%s RTT p50 ÷ upstream wireguard-go (%s)", name, how), Ratio: rtt.Median,
			Min: rtt.Min, Max: rtt.Max, Limit: fmt.Sprintf("≤ %.1f", goalRTT), Met: rtt.Median <= goalRTT, Detailed: true})
	}
	if weft := r.path("weft"); weft != nil && wg != nil {
		if weft.CPUPerGbit != nil && wg.CPUPerGbit != nil && wg.CPUPerGbit.Median > 0 {
			c := paired(*weft.CPUPerGbit, *wg.CPUPerGbit)
			out = append(out, Target{Name: "weft CPU s per Gbit (both ends) ÷ upstream wireguard-go's (1 TCP stream, repetitions)", Ratio: c.Median,
				Min: c.Min, Max: c.Max, Limit: fmt.Sprintf("≤ %.1f", goalCPU), Met: c.Median <= goalCPU, Detailed: true})
		}
		if len(weft.UDPLoss.Runs) > 0 && len(wg.UDPLoss.Runs) > 0 {
			// A difference, not a ratio: upstream's loss may be 0.
			d := weft.UDPLoss.Median - wg.UDPLoss.Median
			out = append(out, Target{Name: fmt.Sprintf("weft UDP loss − upstream wireguard-go's at %s (percentage points, medians)", r.UDPRate), Ratio: d,
				Limit: "≤ 0", Met: d <= 0})
		}
	}
	if d, v := r.path("weft-direct"), r.path("veth"); d != nil && v != nil && v.TCP1.Median > 0 {
		c := d.TCP1.Median / v.TCP1.Median
		out = append(out, Target{Name: "weft-direct throughput ÷ raw underlay (1 TCP stream, medians)", Ratio: c,
			Min: d.TCP1.Min / v.TCP1.Median, Max: d.TCP1.Max / v.TCP1.Median, Limit: "≥ 0.8", Met: c >= 0.8})
	}
	if w, p := r.cni("weft-cni", 1), r.cni("ptp+host-local", 1); w != nil && p != nil {
		c := w.AddP50 / p.AddP50
		out = append(out, Target{Name: "weft-cni ADD p50 ÷ ptp + host-local", Ratio: c, Limit: "≤ 0.8", Met: c <= 0.8})
	}
	return out
}
