package datapath

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
)

// TestKillAndRestartKeepsDataPlane: a kill -9 of an agent leaves its tunnel
// device and routes in place; the restarted agent re-attaches with the same
// key and cross-node traffic flows again within 2 s.
func TestKillAndRestartKeepsDataPlane(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	dst := api.FirstAddress(n2.PodCIDRs[0])
	labtest.WaitPing(t, n1, dst, 10*time.Second)
	keyBefore := labtest.PeerKey(t, c, n1, n2.Name)
	routesBefore := labtest.WeftRoutes(t, n2)
	if len(routesBefore) != 4 {
		t.Fatalf("node2 has %d weft routes, want 4 (2 peers × 2 families):\n%s", len(routesBefore), strings.Join(routesBefore, "\n"))
	}

	c.Agents[n2.Name].Kill()
	if _, err := n2.Run(context.Background(), "ip", "link", "show", "weft0"); err != nil {
		t.Fatalf("weft0 disappeared with the agent: %v", err)
	}
	if got := labtest.WeftRoutes(t, n2); strings.Join(got, "\n") != strings.Join(routesBefore, "\n") {
		t.Fatalf("routes changed while the agent was down:\nbefore:\n%s\nafter:\n%s", strings.Join(routesBefore, "\n"), strings.Join(got, "\n"))
	}

	restart := time.Now()
	c.Start(n2)
	labtest.WaitPing(t, n1, dst, 10*time.Second)
	total := time.Since(restart)
	t.Logf("node1 -> node2 reachable %v after the restart began", total.Round(time.Millisecond))
	if total > 2*time.Second {
		t.Errorf("reachability came back after %v, want within 2s", total)
	}
	if k := labtest.PeerKey(t, c, n1, n2.Name); k != keyBefore {
		t.Errorf("node2's public key changed across restart: %s -> %s", keyBefore, k)
	}
	if !strings.Contains(c.Agents[n2.Name].Output(), "reattached=true") {
		t.Errorf("restarted agent did not re-attach to the existing device:\n%s", c.Agents[n2.Name].Output())
	}
}

// TestNoChangeReconcileWritesNothing: a reconcile with nothing changed makes
// no write to the WireGuard device, by the agent's count and by
// wireguard-go's own log of UAPI changes.
func TestNoChangeReconcileWritesNothing(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	for _, n := range c.Lab.Nodes() {
		c.Start(n, "--log-level", "debug")
	}
	c.WaitMesh(20 * time.Second)
	n1 := c.Lab.Nodes()[0]
	for _, o := range c.Lab.Nodes()[1:] { // agreeing the pairs' keys writes too (they change)
		labtest.Eventually(t, 15*time.Second, "node1 and "+o.Name+" agree a preshared key", func() bool {
			_, ok := labtest.PairKey(t, n1, o)
			return ok
		})
	}
	time.Sleep(time.Second) // let gossip updates and the re-created peers' handshake checks settle
	writes := c.Metric(n1, "weft_wireguard_config_writes_total")
	unchanged := c.Metric(n1, `weft_reconciles_total{result="unchanged"}`)
	logBefore := strings.Count(c.Agents[n1.Name].Output(), "UAPI: ")
	if writes == 0 || logBefore == 0 {
		t.Fatalf("expected the mesh to have been written once (writes=%v, UAPI log lines=%d)", writes, logBefore)
	}

	for i := 0; i < 3; i++ {
		if err := syscall.Kill(c.Agents[n1.Name].Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		want := unchanged + float64(i+1)
		labtest.Eventually(t, 5*time.Second, "forced reconcile ran", func() bool {
			return c.Metric(n1, `weft_reconciles_total{result="unchanged"}`) >= want
		})
	}
	if got := c.Metric(n1, "weft_wireguard_config_writes_total"); got != writes {
		t.Errorf("no-change reconciles wrote to the device: writes %v -> %v", writes, got)
	}
	if got := strings.Count(c.Agents[n1.Name].Output(), "UAPI: "); got != logBefore {
		t.Errorf("wireguard-go logged %d new UAPI changes during no-change reconciles", got-logBefore)
	}
}
