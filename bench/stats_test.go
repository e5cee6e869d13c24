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
	log := "=== tcp1\n" + doc(2e9) + "\n=== tcp4\n" + doc(3e9) + "\n=== udp\n" + doc(0.5e9) + "\n=== tcp1\n" + doc(4e9) + "\n"
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
