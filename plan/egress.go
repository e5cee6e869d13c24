package plan

import (
	"net/netip"
	"slices"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// Egress is the desired egress NAT of one node.
type Egress struct {
	Enabled bool
	// PodCIDRs are this node's pod ranges: sources to masquerade.
	PodCIDRs []netip.Prefix
	// NoMasquerade are destinations reached without NAT: the cluster
	// CIDRs, every node's pod CIDRs, the nodes' own addresses and the
	// operator's extra ranges.
	NoMasquerade []netip.Prefix
	// ClusterPods are every pod address in the cluster: the cluster CIDRs
	// and every node's pod CIDRs (for the agent-port guard).
	ClusterPods []netip.Prefix
	// Direct are the pod CIDRs of peers on a direct path: the only pod
	// destinations that may leave on the underlay.
	Direct []netip.Prefix
	// Strict: pod destinations leave only through Tunnel, a pod veth or a
	// direct path; anything else is dropped (--strict-encryption).
	Strict bool
	Tunnel string
}

// Equal reports whether e and o program the same rules.
func (e Egress) Equal(o Egress) bool {
	return e.Enabled == o.Enabled && slices.Equal(e.PodCIDRs, o.PodCIDRs) && slices.Equal(e.NoMasquerade, o.NoMasquerade) &&
		slices.Equal(e.ClusterPods, o.ClusterPods) && slices.Equal(e.Direct, o.Direct) && e.Strict == o.Strict && e.Tunnel == o.Tunnel
}

// SameChains reports whether e and o program the same chains and rules,
// so that only the sets' members can differ.
func (e Egress) SameChains(o Egress) bool {
	return e.Enabled == o.Enabled && e.Strict == o.Strict && e.Tunnel == o.Tunnel
}

// EgressNAT keeps the egress NAT in step with the mesh: the cluster CIDRs,
// every node's pod CIDRs and addresses, and the operator's extra ranges,
// are reached without NAT; the rest of the world sees the node's address.
// Peer objects' allowed IPs are reached without NAT too: they are in the mesh.
// With cluster CIDRs (which every accepted peer's pod CIDRs are inside) the
// sets hold those and no pod CIDR of a node: a Node that comes or goes
// changes one element (its address), and nft, which reads the whole table
// for any change, reads thousands fewer at thousands of nodes.
func EgressNAT(enabled bool, extra, clusterCIDRs []netip.Prefix, self peer.NodeInfo, peers []peer.NodeInfo, externals ...peer.External) Egress {
	e := Egress{Enabled: enabled, PodCIDRs: self.PodCIDRs}
	// Sized once (each node: its pod CIDRs, at most one per family, and
	// its address), and self taken first without copying the peers.
	nodes, ext := 1+len(peers), 0
	for _, x := range externals {
		ext += len(x.AllowedIPs)
	}
	no := make([]netip.Prefix, 0, len(extra)+len(clusterCIDRs)+ext+3*nodes)
	no = append(append(no, extra...), clusterCIDRs...)
	for _, x := range externals {
		no = append(no, x.AllowedIPs...)
	}
	pods := make([]netip.Prefix, 0, len(clusterCIDRs)+2*nodes)
	pods = append(pods, clusterCIDRs...)
	for i := -1; i < len(peers); i++ {
		n := &self
		if i >= 0 {
			n = &peers[i]
		}
		no = append(no, n.PodCIDRs...)
		pods = append(pods, n.PodCIDRs...)
		a := n.Endpoint.Addr()
		no = append(no, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, n := range peers {
		direct, _ := splitDirect(self, n)
		e.Direct = append(e.Direct, direct...)
	}
	e.Direct = api.Disjoint(e.Direct)
	e.NoMasquerade = api.Disjoint(no)
	e.ClusterPods = api.Disjoint(pods)
	return e
}
