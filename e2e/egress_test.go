package e2e

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// listenIn starts a TCP listener inside a namespace (via do) and returns the
// source address of each connection it accepts.
func listenIn(t *testing.T, do func(func() error) error, addr string) <-chan netip.Addr {
	t.Helper()
	var ln net.Listener
	if err := do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan netip.Addr, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return seen
}

// dialFrom connects from inside a namespace and reports the error.
func dialFrom(do func(func() error) error, dst netip.AddrPort) error {
	return do(func() error {
		c, err := net.DialTimeout("tcp", dst.String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// TestEgressIsMasqueraded: a pod reaching a host outside the cluster is seen
// with its node's address (IPv4 and IPv6), while pod to pod across nodes
// keeps the pod's own address. Turning masquerade off makes the outside
// unreachable, since it has no route back to pod addresses.
func TestEgressIsMasqueraded(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	c.waitMesh(20 * time.Second)
	n1, n2 := c.lab.Nodes()[0], c.lab.Nodes()[1]
	out, err := c.lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*netlab.Node{n1, n2} {
		c.waitCNIConf(n)
	}
	pod, peer := c.addPod(n1, "client"), c.addPod(n2, "server")

	outSeen := listenIn(t, out.Do, ":8080")
	for _, dst := range []netip.Addr{out.Addr, out.Addr6} {
		if err := dialFrom(pod.Do, netip.AddrPortFrom(dst, 8080)); err != nil {
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
	podSeen := listenIn(t, peer.Do, ":8080")
	if err := dialFrom(pod.Do, netip.AddrPortFrom(peer.Addr(false), 8080)); err != nil {
		t.Fatal(err)
	}
	if got := <-podSeen; got != pod.Addr(false) {
		t.Errorf("pod on node2 saw %s, want the client pod's own %s (no NAT between pods)", got, pod.Addr(false))
	}

	// Without masquerade the outside host answers a pod address it cannot route to.
	c.agents[n1.Name].Stop()
	c.start(n1, "--masquerade=false")
	c.waitMesh(20 * time.Second)
	eventually(t, 10*time.Second, "node1 drops its masquerade rule", func() bool {
		out, _ := n1.Run(context.Background(), "nft", "list", "chain", "inet", "weft", "egress-nat")
		return !strings.Contains(out, "masquerade\n") && strings.Contains(out, "chain egress-nat")
	})
	if err := dialFrom(pod.Do, netip.AddrPortFrom(out.Addr, 8080)); err == nil {
		t.Error("with --masquerade=false the outside host still answered: something else NATs pod traffic")
	}
}
