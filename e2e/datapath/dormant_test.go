package datapath

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/mesh"
)

// TestDeadPeerRestsAndWakes (Kubernetes mode): a Node whose agent is down
// stops costing its peers handshakes, and is reachable again as soon as
// its agent is back. node3's agent is killed and node1's restarted, so
// node1's peer for node3 has never answered: node1 keeps initiating for a
// while (the capture's control), then rests it (weft_peers_dormant) and
// sends node3 no WireGuard packet at all; node3's agent comes back, node1
// reaches node3's pod range, and the peer's keepalive is on again.
func TestDeadPeerRestsAndWakes(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)
	n1, n3 := k.Lab.Nodes()[0], k.Lab.Nodes()[2]
	k.Agents[n3.Name].Kill()
	k.Agents[n1.Name].Kill()
	k.StartKube(n1)
	k.WaitReady(n1, 20*time.Second)

	if got := wireguardPackets(t, k.Lab, n1, n3, 12*time.Second); got == 0 {
		t.Fatal("control: node1 sent node3 no WireGuard packet while trying to reach it")
	}
	labtest.Eventually(t, mesh.NeverAnswered+45*time.Second, "node1 rests its peer for node3", func() bool {
		return k.Metric(n1, "weft_peers_dormant") == 1
	})
	if got := wireguardPackets(t, k.Lab, n1, n3, 12*time.Second); got != 0 {
		t.Fatalf("node1 sent %d WireGuard packets to node3 while its peer rested", got)
	}

	k.StartKube(n3)
	for _, p := range n3.PodCIDRs {
		labtest.WaitPing(t, n1, api.FirstAddress(p), 20*time.Second)
	}
	labtest.Eventually(t, 45*time.Second, "node1's peer for node3 awake", func() bool {
		return k.Metric(n1, "weft_peers_dormant") == 0
	})
	out, err := n1.Run(context.Background(), "wg", "show", "weft0", "persistent-keepalive")
	if err != nil {
		t.Fatal(err)
	}
	key := k.Node(n3.Name).Annotations[api.AnnotationPublicKey]
	if !strings.Contains(out, key+"\t25") {
		t.Fatalf("node3's keepalive on node1 is not 25 s again:\n%s", out)
	}
}

// wireguardPackets counts the UDP packets from's node sends to to's
// WireGuard port on the underlay during d.
func wireguardPackets(t *testing.T, lab *netlab.Lab, from, to *netlab.Node, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Underlay, "tcpdump", "-i", "br0", "-l", "-n", "-q",
		"udp and src host "+from.Addr.String()+" and dst host "+to.Addr.String()+" and dst port 51820").Output()
	return len(labtest.NonEmpty(strings.Split(string(out), "\n")))
}
