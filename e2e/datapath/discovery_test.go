package datapath

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestOverlappingPeerIsRefused: a node that announces a pod CIDR overlapping
// one already in the mesh is refused by the others (logged, counted) and
// never takes that range: traffic to the original owner keeps flowing.
func TestOverlappingPeerIsRefused(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	c.Start(n1)
	c.Start(n2)
	labtest.Eventually(t, 20*time.Second, "node1 and node2 peer", func() bool { return len(labtest.PeerNames(t, c, n2)) == 1 })
	owner := api.FirstAddress(n1.PodCIDRs[0])
	labtest.WaitPing(t, n2, owner, 10*time.Second)

	args := c.AgentArgs(n3)
	i := slices.Index(args, "--pod-cidr")
	args[i+1] = "10.244.1.128/25" // inside node1's 10.244.1.0/24
	p, err := n3.Start(c.Bins+"/weft-agent", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.Agents[n3.Name] = p
	labtest.Eventually(t, 20*time.Second, "node2 counts the overlap", func() bool {
		return c.Metric(n2, `weft_peer_rejections_total{reason="cidr-overlap"}`) >= 1
	})
	if got := c.Metric(n2, "weft_gossip_members"); got != 3 {
		t.Fatalf("node2 sees %v gossip members, want 3 (the refused node is alive, just not a peer)", got)
	}
	if names := labtest.PeerNames(t, c, n2); !slices.Equal(names, []string{"node1"}) {
		t.Fatalf("node2's peers = %v, want only node1", names)
	}
	if !strings.Contains(c.Agents[n2.Name].Output(), "refused peer") {
		t.Error("node2 did not log the refusal")
	}
	routes := labtest.WeftRoutes(t, n2)
	for _, r := range routes {
		if strings.HasPrefix(r, "10.244.1.128") {
			t.Fatalf("node2 installed the overlapping range: %s", r)
		}
	}
	labtest.WaitPing(t, n2, owner, 5*time.Second)
}

// TestDeadMemberIsRemoved: when an agent stops for good, memberlist declares
// it gone and every other node removes its peer and routes.
func TestDeadMemberIsRemoved(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n2, n3 := c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	start := time.Now()
	c.Agents[n3.Name].Kill() // no graceful leave: failure detection must notice
	for _, n := range []*netlab.Node{c.Lab.Nodes()[0], n2} {
		labtest.Eventually(t, 30*time.Second, n.Name+" drops node3", func() bool {
			names := labtest.PeerNames(t, c, n)
			return names != nil && !slices.Contains(names, "node3")
		})
		for _, r := range labtest.WeftRoutes(t, n) {
			if strings.HasPrefix(r, "10.244.3.") || strings.HasPrefix(r, "fd00:10:244:3:") {
				t.Fatalf("%s kept a route to the dead node's pods: %s", n.Name, r)
			}
		}
		out, _ := n.Run(context.Background(), "wg", "show", "weft0", "peers")
		if got := len(labtest.NonEmpty(strings.Split(out, "\n"))); got != 1 {
			t.Fatalf("%s: wg show lists %d peers, want 1:\n%s", n.Name, got, out)
		}
	}
	t.Logf("dead node removed from every peer after %v", time.Since(start).Round(100*time.Millisecond))
}

// TestUnreachableSeedIsNotFatal: a seed nobody answers on is logged (once,
// naming it) and retried; the agent still comes up and serves.
func TestUnreachableSeedIsNotFatal(t *testing.T) {
	c := labtest.NewCluster(t, 1)
	n1 := c.Lab.Nodes()[0]
	args := c.AgentArgs(n1)
	args[slices.Index(args, "--join")+1] = "10.99.0.250:7946"
	p, err := n1.Start(c.Bins+"/weft-agent", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.Agents[n1.Name] = p
	c.WaitReady(n1, 10*time.Second)
	labtest.Eventually(t, 30*time.Second, "warning about the seed", func() bool {
		return strings.Contains(c.Agents[n1.Name].Output(), "10.99.0.250:7946")
	})
	select {
	case <-c.Agents[n1.Name].Done():
		t.Fatalf("agent exited: %v", c.Agents[n1.Name].Err())
	default:
	}
}

// TestGossipPartitionHeals: gossip split in two for longer than memberlist
// gossips to the dead (30 s) comes back together once the network is whole
// again. Each half declares the other dead and, gossip being the authority
// here, takes its peers off the data plane; memberlist alone never
// contacts them again, and a member joins only while alone, so without the
// agents' reconnect the halves would stay apart for good.
func TestGossipPartitionHeals(t *testing.T) {
	c := labtest.NewCluster(t, 4)
	c.StartAll()
	c.WaitMesh(30 * time.Second)
	nodes := c.Lab.Nodes()
	ctx := context.Background()
	// Nodes 3 and 4 drop gossip to and from nodes 1 and 2 (both ways, both
	// families); WireGuard is left alone.
	far := fmt.Sprintf("{ %s, %s }", nodes[0].Addr, nodes[1].Addr)
	far6 := fmt.Sprintf("{ %s, %s }", nodes[0].Addr6, nodes[1].Addr6)
	block := fmt.Sprintf(`table inet weft-test-partition {
	chain in { type filter hook input priority -10; ip saddr %[1]s meta l4proto { tcp, udp } th dport 7946 drop; ip saddr %[1]s meta l4proto { tcp, udp } th sport 7946 drop; ip6 saddr %[2]s meta l4proto { tcp, udp } th dport 7946 drop; ip6 saddr %[2]s meta l4proto { tcp, udp } th sport 7946 drop; }
	chain out { type filter hook output priority -10; ip daddr %[1]s meta l4proto { tcp, udp } th dport 7946 drop; ip daddr %[1]s meta l4proto { tcp, udp } th sport 7946 drop; ip6 daddr %[2]s meta l4proto { tcp, udp } th dport 7946 drop; ip6 daddr %[2]s meta l4proto { tcp, udp } th sport 7946 drop; }
}`, far, far6)
	for _, n := range nodes[2:] {
		if out, err := n.Run(ctx, "sh", "-c", "echo '"+block+"' | nft -f -"); err != nil {
			t.Fatalf("partition %s: %v\n%s", n.Name, err, out)
		}
	}
	unblock := func() {
		for _, n := range nodes[2:] {
			_, _ = n.Run(ctx, "nft", "delete", "table", "inet", "weft-test-partition")
		}
	}
	t.Cleanup(unblock)
	split := time.Now()
	for _, n := range nodes {
		want := []string{"node1", "node2"}
		if n.Index > 2 {
			want = []string{"node3", "node4"}
		}
		want = slices.DeleteFunc(want, func(s string) bool { return s == n.Name })
		labtest.Eventually(t, 60*time.Second, n.Name+" keeps only its half", func() bool {
			return slices.Equal(labtest.PeerNames(t, c, n), want)
		})
	}
	t.Logf("the halves dropped each other %v after the split", time.Since(split).Round(100*time.Millisecond))
	// Past memberlist's GossipToTheDeadTime: neither half contacts the
	// other on its own any more.
	time.Sleep(40 * time.Second)
	if got := c.Metric(nodes[0], "weft_gossip_members"); got != 2 {
		t.Fatalf("node1 sees %v gossip members before the network heals, want 2", got)
	}
	unblock()
	healed := time.Now()
	for _, n := range nodes {
		labtest.Eventually(t, 90*time.Second, n.Name+" has every peer back", func() bool {
			return len(labtest.PeerNames(t, c, n)) == 3
		})
	}
	t.Logf("every node had every peer back %v after the network healed", time.Since(healed).Round(100*time.Millisecond))
	labtest.WaitPing(t, nodes[0], api.FirstAddress(nodes[3].PodCIDRs[0]), 10*time.Second)
	labtest.WaitPing(t, nodes[3], api.FirstAddress(nodes[0].PodCIDRs[0]), 10*time.Second)
	reconnected := 0
	for _, p := range c.Agents {
		if strings.Contains(p.Output(), "gossip reconnected") {
			reconnected++
		}
	}
	if reconnected == 0 {
		t.Error("no agent logged that it reconnected")
	}
}
