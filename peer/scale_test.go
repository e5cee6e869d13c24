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
