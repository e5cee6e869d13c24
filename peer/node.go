// Package peer is weft's model of the other nodes and the one place their
// claims are judged: what a node claims (NodeInfo), how a claim is parsed
// from gossip metadata, a Node object or the peer cache, and the trust
// rules that decide which claims become peers (Merge, Accept, Registry).
// It is pure: it does no I/O and imports no client, socket or netlink
// library (a test enforces it), so its rules can be tested and fuzzed alone.
package peer

import (
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
)

// NodeInfo is what one node claims about itself: who it is on the mesh and
// which pod ranges it routes.
type NodeInfo struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort // WireGuard endpoint on the underlay
	GossipAddr netip.AddrPort // memberlist address, used as a seed after restart
	PodCIDRs   []netip.Prefix
	// NodeAddrs are the addresses in the Node object's status (Kubernetes
	// source only): gossip may move the endpoint only to one of them.
	NodeAddrs []netip.Addr
	// Location names where the node runs (a zone, a site); "" is a
	// location of its own. Direct says the node routes pod traffic to
	// peers of its own location straight over the underlay
	// (--intra-location=direct); both ends must say so (see Path).
	Location string
	Direct   bool
	// BehindNAT says the node's announced endpoint may not be where its
	// packets come from: peers keep the endpoint WireGuard learned from its
	// handshakes (--behind-nat). For other nodes the announced endpoint is
	// written back at every reconcile, so a stolen key cannot move them.
	BehindNAT bool
	// Created is when the Node object was created (Kubernetes source only;
	// zero otherwise): gossip tries the oldest Nodes among its seeds.
	Created time.Time
}

// PathKind is how pod traffic between two nodes travels.
type PathKind string

// Path kinds.
const (
	PathEncrypted PathKind = "encrypted" // through the WireGuard tunnel
	PathDirect    PathKind = "direct"    // over the underlay, same location, both ends direct
	PathExternal  PathKind = "external"  // a Peer object: not a node
)

// Path is how self and n exchange pod traffic: direct only when both share
// a named location and both run --intra-location=direct. Both ends compute
// the same answer from the same two claims, so a mismatch (one end direct,
// the other encrypted, or different locations) is encrypted on both.
func Path(self, n NodeInfo) PathKind {
	return PathKind(api.PathBetween(self.Location, self.Direct, n.Location, n.Direct))
}

// Bounds are the cluster's own ranges, which every claim must respect.
type Bounds struct {
	// ClusterCIDRs: each claimed pod CIDR must lie inside one of them (one
	// per family). Empty: not checked (the agent warns at start).
	ClusterCIDRs []netip.Prefix
	// Underlay: the networks nodes talk on; no pod CIDR may cover one.
	Underlay []netip.Prefix
	// ExternalCIDRs: every allowed IP of a Peer object must lie inside one
	// of them. Empty: no Peer object is accepted.
	ExternalCIDRs []netip.Prefix
}

// CheckPodCIDRs reports why ps cannot be a pod range in this cluster: a
// prefix outside every cluster CIDR of its family, or one overlapping the
// underlay. It is the check every claim passes, this node's own included.
func (b Bounds) CheckPodCIDRs(ps []netip.Prefix) (Reason, error) {
	for _, p := range ps {
		if len(b.ClusterCIDRs) > 0 && !insideAny(p, b.ClusterCIDRs) {
			return ReasonOutsideCluster, fmt.Errorf("pod CIDR %s is outside the cluster CIDRs %v", p, b.ClusterCIDRs)
		}
		for _, u := range b.Underlay {
			// Covering the underlay network would pull node traffic into
			// the tunnel; a pod range inside a wide node network (10.0.0.0/8
			// on the hosts) is routed more specifically and is fine.
			if p.Bits() <= u.Bits() && p.Contains(u.Addr()) {
				return ReasonCoversNode, fmt.Errorf("pod CIDR %s covers the underlay %s", p, u)
			}
		}
	}
	return "", nil
}

func insideAny(p netip.Prefix, outer []netip.Prefix) bool {
	for _, o := range outer {
		if o.Addr().Is4() == p.Addr().Is4() && o.Bits() <= p.Bits() && o.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
