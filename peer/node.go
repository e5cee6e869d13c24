// Package peer is weft's model of the other nodes and the one place their
// claims are judged: what a node claims (NodeInfo), how a claim is parsed
// from gossip metadata, a Node object or the peer cache, and the trust
// rules that decide which claims become peers (Merge, Accept, Registry).
// It is pure: it does no I/O and imports no client, socket or netlink
// library (a test enforces it), so its rules can be tested and fuzzed alone.
package peer

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// NodeInfo is what one node claims about itself: who it is on the mesh and
// which pod ranges it routes.
type NodeInfo struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort // WireGuard endpoint on the underlay
	GossipAddr netip.AddrPort // memberlist address, used as a seed after restart
	PodCIDRs   []netip.Prefix
}
