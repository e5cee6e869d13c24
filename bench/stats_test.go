package bench

import (
	"strconv"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 {
		t.Fatalf("%+v", s)
	}
	if q := quantile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99); q < 9.9 || q > 10 {
		t.Fatalf("p99 = %v", q)
	}
}

func TestParseIperfLog(t *testing.T) {
	doc := func(bps float64) string {
		return `{"end":{"sum_received":{"bits_per_second":` + ftoa(bps) + `},"sum":{"bits_per_second":` + ftoa(bps) + `,"lost_percent":1.5,"jitter_ms":0.2}}}`
	}
	log := "=== tcp1\n" + doc(2e9) + "\n=== tcp4\n" + doc(3e9) + "\n=== udp\n" + doc(0.5e9) + "\n" +
		"--- tcp1 try 1: \"error\": \"unable to receive control message: Connection reset by peer\"\n" +
		"=== tcp1\n" + doc(4e9) + "\n"
	r, err := ParseIperfLog("x", []byte(log))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Paths[0]
	if p.TCP1.Median != 3 || p.TCP1.Min != 2 || p.TCP4.Median != 3 || p.UDPLoss.Median != 1.5 {
		t.Fatalf("%+v", p)
	}
	if _, err := ParseIperfLog("x", []byte(`=== tcp1
{"error":"unable to connect"}`)); err == nil {
		t.Fatal("an iperf3 error was not reported")
	}
	md := Markdown(r, "")
	if !strings.Contains(md, "| **x** — in-cluster iperf3 pair | 3.00 (2.00–4.00) |") || strings.Contains(md, "svg") {
		t.Fatalf("table:\n%s", md)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func TestPairedRatiosCancelDrift(t *testing.T) {
	// The machine slows down over the run; weft is 5 % faster in every pair.
	base := summarize([]float64{3.0, 2.0, 1.0})
	weft := summarize([]float64{3.15, 2.1, 1.05})
	p := paired(weft, base)
	if p.Min < 1.049 || p.Max > 1.051 {
		t.Errorf("paired ratios %.3f–%.3f, want 1.05", p.Min, p.Max)
	}
}

func TestTargetsDecidedOnPairs(t *testing.T) {
	// The repetitions say weft is slower; the back-to-back pairs, which
	// the targets go by when there are any, say 2 % faster.
	r := &Results{Paths: []PathResult{
		{Name: "wireguard-go", TCP1: summarize([]float64{4}), RTTP50: summarize([]float64{0.4}),
			PairTCP1: summarize([]float64{3, 3.5, 4}), PairRTTP50: summarize([]float64{0.4, 0.4, 0.4})},
		{Name: "weft", TCP1: summarize([]float64{3}), RTTP50: summarize([]float64{0.5}),
			PairTCP1: summarize([]float64{3.06, 3.57, 4.08}), PairRTTP50: summarize([]float64{0.42, 0.42, 0.42})},
	}}
	got := targets(r)
	if len(got) != 2 {
		t.Fatalf("targets: %+v", got)
	}
	if tp := got[0]; tp.Ratio < 1.019 || tp.Ratio > 1.021 || tp.Met || !strings.Contains(tp.Name, "3 back-to-back pairs") {
		t.Errorf("throughput target %+v, want 1.02 from 3 pairs, not met (goal 1.5)", tp)
	}
	if rt := got[1]; rt.Ratio < 1.049 || rt.Ratio > 1.051 || rt.Met {
		t.Errorf("RTT target %+v, want 1.05, not met (goal 1.0)", rt)
	}
	r.Paths[0].PairTCP1, r.Paths[1].PairTCP1 = Summary{}, Summary{}
	if tp := targets(r)[0]; tp.Ratio != 0.75 || tp.Met || !strings.Contains(tp.Name, "repetitions") {
		t.Errorf("without pairs the repetitions decide: %+v", tp)
	}
}

func TestTargetsAgainstBothAnchors(t *testing.T) {
	// weft at 1.6× upstream but 0.9× the fork: one goal met, one not.
	r := &Results{Paths: []PathResult{
		{Name: "wireguard-go", PairTCP1: summarize([]float64{2, 2}), PairRTTP50: summarize([]float64{0.4, 0.4})},
		{Name: "wireguard-go-tailscale", PairTCP1: summarize([]float64{3.6, 3.6}), PairRTTP50: summarize([]float64{0.3, 0.3})},
		{Name: "weft", PairTCP1: summarize([]float64{3.2, 3.2}), PairRTTP50: summarize([]float64{0.4, 0.4})},
	}}
	got := targets(r)
	if len(got) != 3 {
		t.Fatalf("targets: %+v", got)
	}
	if up, fork := got[0], got[1]; up.Ratio != 1.6 || !up.Met || !strings.Contains(fork.Name, "Tailscale") || fork.Ratio < 0.888 || fork.Ratio > 0.889 || fork.Met {
		t.Errorf("want 1.6× upstream (met) and 0.89× the fork (not met): %+v, %+v", up, fork)
	}
}

func TestCPUAndUDPLossTargets(t *testing.T) {
	// weft spends 0.6× upstream's CPU per Gbit in each repetition (met) and
	// loses 2 points more UDP (not met); a 0 % loss upstream cannot make a
	// ratio blow up, the loss target is a difference.
	cpuWG, cpuWeft := summarize([]float64{0.5, 0.4}), summarize([]float64{0.3, 0.24})
	r := &Results{UDPRate: "500M", Paths: []PathResult{
		{Name: "wireguard-go", CPUPerGbit: &cpuWG, UDPLoss: summarize([]float64{0, 0})},
		{Name: "weft", CPUPerGbit: &cpuWeft, UDPLoss: summarize([]float64{2, 2})},
	}}
	byName := map[string]Target{}
	for _, tg := range targets(r) {
		byName[strings.Fields(tg.Name)[1]] = tg
	}
	if c := byName["CPU"]; c.Ratio < 0.599 || c.Ratio > 0.601 || !c.Met {
		t.Errorf("CPU target %+v, want 0.6, met (goal 0.7)", c)
	}
	if u := byName["UDP"]; u.Ratio != 2 || u.Met || !strings.Contains(u.Name, "500M") {
		t.Errorf("UDP loss target %+v, want +2 points at 500M, not met", u)
	}
}

func TestInfraBuilderTableJoinsPodAndService(t *testing.T) {
	cpu, mem := summarize([]float64{0.5}), summarize([]float64{300})
	r := &Results{Paths: []PathResult{
		{Name: "wireguard-go", TCP1: summarize([]float64{3})},
		{Name: "weft-node", TCP1: summarize([]float64{2.9})},
		{Name: "weft", TCP1: summarize([]float64{3.1}), UDP: summarize([]float64{0.5}), UDPLoss: summarize([]float64{4}),
			CPUPerGbit: &cpu, RSSMiB: &mem, PeakRSSMiB: 900},
		{Name: "weft-service", TCP1: summarize([]float64{2.7}), Flows4: summarize([]float64{2.5}), CPUPerGbit: &cpu},
	}}
	md := infraBuilderTable(r)
	for _, want := range []string{
		"| wireguard-go | node to node | 3.00 |",
		"| weft | pod to pod, pod to Service | 3.10 | – | – | 0.50 (4.0) | 2.70 | 2.50 | – | 0.50 / 0.50 | 300 / 900 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| weft-service |") || strings.Contains(md, "| weft-node |") {
		t.Errorf("weft-service and weft-node have no rows of their own:\n%s", md)
	}
}
