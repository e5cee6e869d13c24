package datapath

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
)

// TestUnderlayCarriesOnlyCiphertext captures on the underlay bridge while
// nodes ping each other's pod-CIDR addresses with a recognisable payload:
// the packets cross as WireGuard UDP, and neither a pod address nor the
// payload appears in clear on the wire.
func TestUnderlayCarriesOnlyCiphertext(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	for _, p := range n2.PodCIDRs {
		labtest.WaitPing(t, n1, api.FirstAddress(p), 10*time.Second)
	}

	pcap := filepath.Join(c.Lab.Dir, "underlay.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cap := exec.CommandContext(ctx, "ip", "netns", "exec", c.Lab.Underlay,
		"tcpdump", "-i", "br0", "-U", "-n", "-s", "0", "-w", pcap)
	var capErr bytes.Buffer
	cap.Stderr = &capErr
	if err := cap.Start(); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, 10*time.Second, "tcpdump listening", func() bool {
		return strings.Contains(capErr.String(), "listening on")
	})

	const pattern = "77656674706c61696e74657874" // "weftplaintext"
	for _, p := range n2.PodCIDRs {
		dst := api.FirstAddress(p).String()
		out, err := exec.Command("ip", "netns", "exec", n1.NS, "ping", "-n", "-c", "20", "-i", "0.05", "-p", pattern, "-s", "512", dst).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %s with payload: %v\n%s", dst, err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	cap.Process.Signal(os.Interrupt)
	cap.Wait()

	read := func(filter ...string) []string {
		args := append([]string{"-r", pcap, "-n"}, filter...)
		out, err := exec.Command("tcpdump", args...).Output()
		if err != nil {
			t.Fatalf("tcpdump -r %v: %v", filter, err)
		}
		return labtest.NonEmpty(strings.Split(string(out), "\n"))
	}
	wg := read("udp", "port", "51820")
	if len(wg) < 40 { // at least the 2×20 echo requests, encrypted (GSO may merge others)
		t.Fatalf("capture holds %d WireGuard packets, want at least 40: the capture missed the traffic", len(wg))
	}
	if leaked := read("net", "10.244.0.0/16", "or", "net", "fd00:10:244::/48"); len(leaked) > 0 {
		t.Fatalf("%d packets carried a pod address in clear on the underlay, e.g. %s", len(leaked), leaked[0])
	}
	if icmp := read("icmp", "or", "icmp6 and not ip6[40] >= 133"); len(icmp) > 0 {
		t.Fatalf("ICMP echo crossed the underlay in clear: %s", icmp[0])
	}
	raw, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("weftplaintext")) {
		t.Fatal("the ping payload appears in clear in the underlay capture")
	}
	t.Logf("underlay capture: %d WireGuard packets, no pod address and no payload in clear", len(wg))
}
