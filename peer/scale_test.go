package peer

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ScaleNodes returns n nodes as a cluster of that size announces them: a
// /24 and a /64 each inside 10.0.0.0/8 and fd00:10::/48, an endpoint on
// 10.200.0.0/16 (shared by the benchmarks of peer and plan).
func scaleNodes(n int) []NodeInfo {
	out := make([]NodeInfo, n)
	for i := range n {
		k, _ := wgtypes.GeneratePrivateKey()
		a := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
		out[i] = NodeInfo{
			Name:      fmt.Sprintf("node%04d", i),
			PublicKey: k.PublicKey(),
			Endpoint:  netip.AddrPortFrom(a, 51820),
			PodCIDRs: []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + i>>8), byte(i), 0}), 24),
				netip.MustParsePrefix(fmt.Sprintf("fd00:10:0:%x::/64", i+1)),
			},
		}
	}
	return out
}

// BenchmarkAccept1000 is the registry's judgement of 1000 claims, what it
// runs on every change of any source.
func BenchmarkAccept1000(b *testing.B) {
	nodes := scaleNodes(1001)
	self, peers := nodes[0], nodes[1:]
	claims := map[string]Claim{}
	var prev []string
	for _, n := range peers {
		claims[n.Name] = Claim{n, SourceKubernetes}
		prev = append(prev, n.Name)
	}
	bounds := Bounds{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00:10::/48")}}
	b.ReportAllocs()
	for b.Loop() {
		acc, rej := Accept(self, bounds, prev, claims)
		if len(acc) != 1000 || len(rej) != 0 {
			b.Fatalf("accepted %d, rejected %v", len(acc), rej)
		}
	}
}
