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

// TestEgressSetsFollowTheMesh: when a node joins and leaves, the egress
// sets of the others gain and lose its address by element (its pod ranges
// are inside the cluster CIDR, which the set holds; the masquerade rule is
// not rewritten: its handle and counter stay), a pod reaches the new
// node's pods with its own address and the outside with its node's,
// before and after.
func TestEgressSetsFollowTheMesh(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	c.Start(n1)
	c.Start(n2)
	c.WaitMeshOf([]*netlab.Node{n1, n2}, 20*time.Second)
	out, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	c.WaitCNIConf(n1)
	pod := c.AddPod(n1, "client")
	outSeen := labtest.ListenIn(t, out.Do, ":8080")
	egress := func(when string) {
		t.Helper()
		if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(out.Addr, 8080)); err != nil {
			t.Fatalf("%s: pod cannot reach the outside host: %v", when, err)
		}
		if got := <-outSeen; got != n1.Addr {
			t.Fatalf("%s: outside host saw %s, want node1's address %s (masqueraded)", when, got, n1.Addr)
		}
	}
	egress("two nodes")
	set := func() string {
		s, _ := n1.Run(context.Background(), "nft", "list", "set", "inet", "weft", "no-masquerade-v4")
		return s
	}
	rule := func() string {
		s, _ := n1.Run(context.Background(), "nft", "-a", "list", "chain", "inet", "weft", "egress-nat")
		return labtest.FirstLine(s, "masquerade # handle")
	}
	before := rule()
	if s := set(); before == "" || strings.Contains(s, n3.Addr.String()) || !strings.Contains(s, "10.244.0.0/16") {
		t.Fatalf("before node3 joins: masquerade rule %q, no-masquerade set:\n%s", before, set())
	}

	c.Start(n3)
	c.WaitMesh(20 * time.Second)
	labtest.Eventually(t, 10*time.Second, "node1's no-masquerade set gains node3's address", func() bool {
		return strings.Contains(set(), n3.Addr.String())
	})
	c.WaitCNIConf(n3)
	server := c.AddPod(n3, "server")
	podSeen := labtest.ListenIn(t, server.Do, ":8080")
	if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(server.Addr(false), 8080)); err != nil {
		t.Fatalf("pod on node1 cannot reach the pod on node3: %v", err)
	}
	if got := <-podSeen; got != pod.Addr(false) {
		t.Errorf("pod on node3 saw %s, want the client's own %s (no NAT between pods)", got, pod.Addr(false))
	}
	egress("node3 joined")

	c.Agents[n3.Name].Stop() // leaves gossip: node1 drops the peer
	labtest.Eventually(t, 20*time.Second, "node1's no-masquerade set loses node3's address", func() bool {
		return !strings.Contains(set(), n3.Addr.String())
	})
	egress("node3 left")
	after := rule()
	handle := func(r string) string { _, h, _ := strings.Cut(r, "# handle "); return h }
	if handle(after) != handle(before) {
		t.Errorf("the masquerade rule was rewritten as the mesh changed (handle %q, then %q): the sets should change by element", handle(before), handle(after))
	}
	if !strings.Contains(after, "packets 3 ") {
		t.Errorf("masquerade rule %q: want the 3 connections to the outside counted on one rule", after)
	}
}
