package datapath

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestEgressIsMasqueraded: a pod reaching a host outside the cluster is seen
// with its node's address (IPv4 and IPv6), while pod to pod across nodes
// keeps the pod's own address. Turning masquerade off makes the outside
// unreachable, since it has no route back to pod addresses.
func TestEgressIsMasqueraded(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	out, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*netlab.Node{n1, n2} {
		c.WaitCNIConf(n)
	}
	pod, peer := c.AddPod(n1, "client"), c.AddPod(n2, "server")

	outSeen := labtest.ListenIn(t, out.Do, ":8080")
	for _, dst := range []netip.Addr{out.Addr, out.Addr6} {
		if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(dst, 8080)); err != nil {
			t.Fatalf("pod cannot reach the outside host %s: %v", dst, err)
		}
		want := n1.Addr
		if dst.Is6() {
			want = n1.Addr6
		}
		if got := <-outSeen; got != want {
			t.Errorf("outside host saw %s, want node1's address %s (masqueraded)", got, want)
		}
	}
	podSeen := labtest.ListenIn(t, peer.Do, ":8080")
	if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(peer.Addr(false), 8080)); err != nil {
		t.Fatal(err)
	}
	if got := <-podSeen; got != pod.Addr(false) {
		t.Errorf("pod on node2 saw %s, want the client pod's own %s (no NAT between pods)", got, pod.Addr(false))
	}

	// Without masquerade the outside host answers a pod address it cannot route to.
	c.Agents[n1.Name].Stop()
	c.Start(n1, "--masquerade=false")
	c.WaitMesh(20 * time.Second)
	labtest.Eventually(t, 10*time.Second, "node1 drops its masquerade rule", func() bool {
		out, _ := n1.Run(context.Background(), "nft", "list", "chain", "inet", "weft", "egress-nat")
		return !strings.Contains(out, "masquerade\n") && strings.Contains(out, "chain egress-nat")
	})
	if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(out.Addr, 8080)); err == nil {
		t.Error("with --masquerade=false the outside host still answered: something else NATs pod traffic")
	}
}
