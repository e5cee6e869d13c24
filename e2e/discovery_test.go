package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// TestOverlappingPeerIsRefused: a node that announces a pod CIDR overlapping
// one already in the mesh is refused by the others (logged, counted) and
// never takes that range: traffic to the original owner keeps flowing.
func TestOverlappingPeerIsRefused(t *testing.T) {
	c := newCluster(t, 3)
	n1, n2, n3 := c.lab.Nodes()[0], c.lab.Nodes()[1], c.lab.Nodes()[2]
	c.start(n1)
	c.start(n2)
	eventually(t, 20*time.Second, "node1 and node2 peer", func() bool { return len(peerNames(t, c, n2)) == 1 })
	owner := api.FirstAddress(n1.PodCIDRs[0])
	waitPing(t, n2, owner, 10*time.Second)

	args := c.agentArgs(n3)
	i := slices.Index(args, "--pod-cidr")
	args[i+1] = "10.244.1.128/25" // inside node1's 10.244.1.0/24
	p, err := n3.Start(c.bins+"/weft-agent", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.agents[n3.Name] = p
	eventually(t, 20*time.Second, "node2 counts the overlap", func() bool {
		return c.metric(n2, `weft_peer_rejections_total{reason="cidr-overlap"}`) >= 1
	})
	if got := c.metric(n2, "weft_gossip_members"); got != 3 {
		t.Fatalf("node2 sees %v gossip members, want 3 (the refused node is alive, just not a peer)", got)
	}
	if names := peerNames(t, c, n2); !slices.Equal(names, []string{"node1"}) {
		t.Fatalf("node2's peers = %v, want only node1", names)
	}
	if !strings.Contains(c.agents[n2.Name].Output(), "refused peer") {
		t.Error("node2 did not log the refusal")
	}
	routes := weftRoutes(t, n2)
	for _, r := range routes {
		if strings.HasPrefix(r, "10.244.1.128") {
			t.Fatalf("node2 installed the overlapping range: %s", r)
		}
	}
	waitPing(t, n2, owner, 5*time.Second)
}

// TestDeadMemberIsRemoved: when an agent stops for good, memberlist declares
// it gone and every other node removes its peer and routes.
func TestDeadMemberIsRemoved(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	c.waitMesh(20 * time.Second)
	n2, n3 := c.lab.Nodes()[1], c.lab.Nodes()[2]
	start := time.Now()
	c.agents[n3.Name].Kill() // no graceful leave: failure detection must notice
	for _, n := range []*netlab.Node{c.lab.Nodes()[0], n2} {
		eventually(t, 30*time.Second, n.Name+" drops node3", func() bool {
			names := peerNames(t, c, n)
			return names != nil && !slices.Contains(names, "node3")
		})
		for _, r := range weftRoutes(t, n) {
			if strings.HasPrefix(r, "10.244.3.") || strings.HasPrefix(r, "fd00:10:244:3:") {
				t.Fatalf("%s kept a route to the dead node's pods: %s", n.Name, r)
			}
		}
		out, _ := n.Run(context.Background(), "wg", "show", "weft0", "peers")
		if got := len(nonEmpty(strings.Split(out, "\n"))); got != 1 {
			t.Fatalf("%s: wg show lists %d peers, want 1:\n%s", n.Name, got, out)
		}
	}
	t.Logf("dead node removed from every peer after %v", time.Since(start).Round(100*time.Millisecond))
}

// TestUnreachableSeedIsNotFatal: a seed nobody answers on is logged (once,
// naming it) and retried; the agent still comes up and serves.
func TestUnreachableSeedIsNotFatal(t *testing.T) {
	c := newCluster(t, 1)
	n1 := c.lab.Nodes()[0]
	args := c.agentArgs(n1)
	args[slices.Index(args, "--join")+1] = "10.99.0.250:7946"
	p, err := n1.Start(c.bins+"/weft-agent", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.agents[n1.Name] = p
	c.waitReady(n1, 10*time.Second)
	eventually(t, 30*time.Second, "warning about the seed", func() bool {
		return strings.Contains(c.agents[n1.Name].Output(), "10.99.0.250:7946")
	})
	select {
	case <-c.agents[n1.Name].Done():
		t.Fatalf("agent exited: %v", c.agents[n1.Name].Err())
	default:
	}
}

// peerNames lists the names of a node's peers, sorted; nil while its agent does not answer.
func peerNames(t *testing.T, c *cluster, n *netlab.Node) []string {
	t.Helper()
	names, err := n.PeerNames(context.Background(), c.bins)
	if err != nil {
		return nil
	}
	slices.Sort(names)
	return names
}
