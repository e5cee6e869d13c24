package datapath

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/weftnet/weft/bench"
	"github.com/weftnet/weft/internal/netlab"
)

// TestBenchHarness runs `make bench` in miniature (one repetition of 1-s
// runs, one target pair) and checks that it measured what it reports:
// traffic crossed every path, the CNI and convergence figures exist, the
// agents' profiles caught the tunnel at work, and the files are written.
// It checks no speed: figures are the bench's business, not a test's.
func TestBenchHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test: needs root and network namespaces; run without -short")
	}
	bins, err := netlab.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"wireguard-go", "wireguard-go-tailscale"} {
		if _, err := os.Stat(filepath.Join(bins, bin)); err != nil {
			t.Fatalf("the bench needs %s in %s (make build puts it there): %v", bin, bins, err)
		}
	}
	cpDir, err := netlab.ControlPlaneBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, bench.Config{BinDir: bins, ControlPlaneDir: cpDir, Reps: 1, Duration: 2 * time.Second, UDPRate: "100M",
		Pings: 20, CNIPods: 4, Pairs: 1, Log: testLog{t}})
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	want := []string{"veth", "vxlan", "wireguard-go", "wireguard-go-tailscale", "weft-node", "weft", "weft-service", "weft-direct"}
	if len(res.Paths) != len(want) {
		t.Fatalf("paths %d, want %v", len(res.Paths), want)
	}
	for i, p := range res.Paths {
		if p.Name != want[i] {
			t.Errorf("path %d is %s, want %s", i, p.Name, want[i])
		}
		// A broken path gives iperf3 errors (the run fails) or no bytes.
		// A ClusterIP does not answer ping: the Service path has no RTT.
		if p.TCP1.Median < 0.01 || p.TCP4.Median < 0.01 || p.Flows4.Median < 0.01 || p.UDP.Median < 0.01 || p.RR.Median <= 0 ||
			(p.RTTP50.Median <= 0) != (p.Name == "weft-service") {
			t.Errorf("%s: nothing measured: %+v", p.Name, p)
		}
	}
	for _, name := range []string{"wireguard-go", "wireguard-go-tailscale", "weft-node", "weft", "weft-service"} {
		for _, p := range res.Paths {
			if p.Name == name && name != "weft-service" && (len(p.PairTCP1.Runs) != 1 || len(p.PairRTTP50.Runs) != 1) {
				t.Errorf("%s: target pair missing: %+v %+v", name, p.PairTCP1, p.PairRTTP50)
			}
			// Userspace paths: CPU per Gbit and memory of both ends.
			if p.Name == name && (p.CPUPerGbit == nil || p.CPUPerGbit.Median <= 0 || p.RSSMiB == nil || p.RSSMiB.Median < 1) {
				t.Errorf("%s: no CPU or memory figure: %v %v", name, p.CPUPerGbit, p.RSSMiB)
			}
		}
	}
	if len(res.CNI) != 4 {
		t.Errorf("CNI figures: %+v", res.CNI)
	}
	for _, c := range res.CNI {
		if c.N != 4 || c.AddP50 <= 0 || c.DelP50 <= 0 {
			t.Errorf("CNI %s ×%d: %+v", c.Chain, c.Parallel, c)
		}
	}
	if len(res.Convergence.Runs) != 1 || res.Convergence.Median <= 0 {
		t.Errorf("convergence: %+v", res.Convergence)
	}
	if len(res.Targets) != 10 { // weft and weft-node against both anchors and RTT; weft's CPU and UDP loss; direct; CNI
		t.Errorf("targets: %+v", res.Targets)
	}
	// The direct path must not be the tunnel in disguise: without
	// encryption it carries several times what the tunnel does here.
	var weft, direct float64
	for _, p := range res.Paths {
		switch p.Name {
		case "weft":
			weft = p.TCP1.Median
		case "weft-direct":
			direct = p.TCP1.Median
		}
	}
	if direct < 1.5*weft {
		t.Errorf("weft-direct %.2f Gbit/s against the tunnel's %.2f: the direct path is not direct", direct, weft)
	}
	// The profiles must be of the agents carrying the stream: most of
	// their CPU in wireguard-go's data path.
	if len(res.AgentProfiles) != 2 {
		t.Fatalf("agent profiles: %+v", res.AgentProfiles)
	}
	for _, p := range res.AgentProfiles {
		if p.Seconds <= 0 || p.Shares["wireguard-go"] < 0.5 {
			t.Errorf("%s agent profile did not catch the tunnel at work: %.2f CPU s, shares %v", p.Side, p.Seconds, p.Shares)
		}
	}

	dir := t.TempDir()
	md, err := bench.Write(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| **weft** —", "| target | this run | goal | met |", "| weft | pod to pod, pod to Service |", "The ceiling: one core", "1 back-to-back pairs", "wireguard-go data path"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
	for _, name := range []string{"latest.md", "throughput.svg", "latency.svg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	for _, p := range res.AgentProfiles {
		f, err := os.Open(filepath.Join(dir, p.File))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := profile.Parse(f); err != nil {
			t.Errorf("%s: not a profile go tool pprof can read: %v", p.File, err)
		}
		f.Close()
	}
}

// testLog writes the bench's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
