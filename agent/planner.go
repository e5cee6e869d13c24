package agent

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/weftnet/weft/mesh"
)

// Keepalive is the persistent keepalive of every peer. Besides keeping NAT
// mappings open, turning it on makes a freshly configured peer send a
// handshake at once, so a restarted agent re-establishes sessions without
// waiting for traffic to time out.
const Keepalive = 25 * time.Second

// Plan turns this node and its accepted peers into the data plane it wants:
// the node's own first address in each pod CIDR on the tunnel, one WireGuard
// peer per node whose AllowedIPs are exactly that node's pod CIDRs, and a route
// per remote pod CIDR with the node's own address of that family as source, so
// node-to-remote-pod traffic passes the peer's cryptokey routing.
func Plan(self NodeInfo, peers []NodeInfo) mesh.State {
	var s mesh.State
	src := map[bool]netip.Addr{}
	for _, p := range self.PodCIDRs {
		a := FirstAddress(p)
		src[a.Is4()] = a
		s.Addresses = append(s.Addresses, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, n := range peers {
		s.Peers = append(s.Peers, mesh.Peer{
			Name:       n.Name,
			PublicKey:  n.PublicKey,
			Endpoint:   n.Endpoint,
			AllowedIPs: n.PodCIDRs,
			Keepalive:  Keepalive,
			// The end with the greater key waits for the other's handshake.
			Passive: bytes.Compare(self.PublicKey[:], n.PublicKey[:]) > 0,
		})
		for _, p := range n.PodCIDRs {
			s.Routes = append(s.Routes, mesh.Route{Dst: p, Src: src[p.Addr().Is4()]})
		}
	}
	return s
}
