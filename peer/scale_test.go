package peer_test

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/peertest"
	"github.com/weftnet/weft/peer"
)

// BenchmarkAccept1000 is the registry's judgement of 1000 claims, what it
// runs on every change of any source.
func BenchmarkAccept1000(b *testing.B) {
	nodes := peertest.Nodes(1001)
	self, peers := nodes[0], nodes[1:]
	claims := map[string]peer.Claim{}
	var prev []string
	for _, n := range peers {
		claims[n.Name] = peer.Claim{NodeInfo: n, Source: peer.SourceKubernetes}
		prev = append(prev, n.Name)
	}
	bounds := peer.Bounds{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00:10::/48")}}
	b.ReportAllocs()
	for b.Loop() {
		acc, rej := peer.Accept(self, bounds, prev, claims)
		if len(acc) != 1000 || len(rej) != 0 {
			b.Fatalf("accepted %d, rejected %v", len(acc), rej)
		}
	}
}

// BenchmarkRegistryChange5000 is what one Node change costs the registry
// at 5000 Nodes: the change, then the next pass's read of the accepted
// peers (Merge and Accept over every claim).
func BenchmarkRegistryChange5000(b *testing.B) {
	nodes := peertest.Nodes(5001)
	self, peers := nodes[0], nodes[1:]
	bounds := peer.Bounds{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00:10::/48")}}
	reg := peer.NewRegistry(self, true, bounds, nil)
	reg.SetAPIUp(true)
	for _, n := range peers {
		n.NodeAddrs = []netip.Addr{n.Endpoint.Addr()} // a Node's InternalIP is its endpoint's
		reg.Set(peer.SourceKubernetes, n)
	}
	if got := len(reg.Peers()); got != 5000 {
		b.Fatalf("accepted %d of 5000", got)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n := peers[i%len(peers)]
		i++
		reg.Delete(peer.SourceKubernetes, n.Name)
		if got := len(reg.Peers()); got != 4999 {
			b.Fatalf("accepted %d of 4999", got)
		}
		n.NodeAddrs = []netip.Addr{n.Endpoint.Addr()}
		reg.Set(peer.SourceKubernetes, n)
		if got := len(reg.Peers()); got != 5000 {
			b.Fatalf("accepted %d of 5000", got)
		}
	}
}
