// Package peertest builds synthetic clusters for tests and benchmarks of
// the packages that judge and plan peers.
package peertest

import (
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
)

// Nodes returns n nodes as a cluster of that size announces them: a /24
// and a /64 each inside 10.0.0.0/8 and fd00:10::/48, an endpoint on
// 10.200.0.0/16, a fresh key each.
func Nodes(n int) []peer.NodeInfo {
	out := make([]peer.NodeInfo, n)
	for i := range n {
		k, _ := wgtypes.GeneratePrivateKey()
		a := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
		out[i] = peer.NodeInfo{
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
