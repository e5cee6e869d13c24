package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Source names where a claim came from, as shown in /v1/peers.
type Source string

// Claim sources.
const (
	SourceKubernetes  Source = "kubernetes"         // a Node object (authority in Kubernetes mode)
	SourceGossip      Source = "gossip"             // memberlist (authority in standalone mode)
	SourceProvisional Source = "gossip-provisional" // gossip while the API server is unreachable
	SourceCache       Source = "cache"              // the last accepted peers, restored after a restart
)

// Claim is what one source says about a node.
type Claim struct {
	NodeInfo
	Source Source
}

// Sources is everything the registry has heard, by source.
type Sources struct {
	KubeMode bool
	APIUp    bool // Kubernetes mode: the API server answers and the Node list is synced
	Kube     map[string]NodeInfo
	Gossip   map[string]NodeInfo
	Cache    map[string]NodeInfo
}

// Merge applies the trust rules between sources (docs/design.md). It is pure.
//
// Standalone: gossip is the authority; cached peers stand in until gossip
// confirms or the agent drops them.
//
// Kubernetes: the Node object is the authority for name, key and pod CIDRs.
// Gossip may only move a Node's endpoint (roaming) and only when it agrees on
// key and CIDRs; a contradicting claim is refused. A gossip-only node is
// refused while the API answers, and accepted provisionally while it does not.
// Cached peers stand in only while the API has not answered.
func Merge(s Sources) (map[string]Claim, []Rejection) {
	claims := map[string]Claim{}
	var rej []Rejection
	if !s.KubeMode {
		for n, c := range s.Cache {
			claims[n] = Claim{c, SourceCache}
		}
		for n, g := range s.Gossip {
			claims[n] = Claim{g, SourceGossip}
		}
		return claims, rej
	}
	for n, k := range s.Kube {
		if g, ok := s.Gossip[n]; ok {
			switch {
			case !agrees(k, g):
				rej = append(rej, Rejection{n, ReasonContradiction, fmt.Sprintf("gossip says key %s and pod CIDRs %v; the Node says %s and %v",
					g.PublicKey, g.PodCIDRs, k.PublicKey, k.PodCIDRs)})
			case !k.ownsAddr(g.Endpoint.Addr()) || g.GossipAddr.IsValid() && !k.ownsAddr(g.GossipAddr.Addr()):
				// The same check the annotations get: a key holder must
				// not point a node's traffic at an address not the node's.
				rej = append(rej, Rejection{n, ReasonContradiction, fmt.Sprintf("gossip moves the endpoint to %s (gossip %s), not one of the Node's addresses %v",
					g.Endpoint, g.GossipAddr, k.NodeAddrs)})
			default:
				k.Endpoint, k.GossipAddr = g.Endpoint, g.GossipAddr
			}
		}
		claims[n] = Claim{k, SourceKubernetes}
	}
	if s.APIUp {
		for n := range s.Gossip {
			if _, ok := s.Kube[n]; !ok {
				rej = append(rej, Rejection{n, ReasonNotANode, "announced by gossip but there is no such Node"})
			}
		}
		return claims, rej
	}
	for n, c := range s.Cache {
		if _, ok := claims[n]; !ok {
			if g, ok := s.Gossip[n]; ok && agrees(c, g) {
				c.Endpoint, c.GossipAddr = g.Endpoint, g.GossipAddr
			}
			claims[n] = Claim{c, SourceCache}
		}
	}
	for n, g := range s.Gossip {
		if _, ok := claims[n]; !ok {
			claims[n] = Claim{g, SourceProvisional}
		}
	}
	return claims, rej
}

func agrees(a, b NodeInfo) bool {
	return a.PublicKey == b.PublicKey && slices.Equal(sortedCIDRs(a.PodCIDRs), sortedCIDRs(b.PodCIDRs))
}

func sortedCIDRs(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// ownsAddr reports whether a is one of the Node's addresses. A NodeInfo
// without NodeAddrs (not from a Node object) owns only its endpoint's.
func (n NodeInfo) ownsAddr(a netip.Addr) bool {
	if len(n.NodeAddrs) == 0 {
		return a == n.Endpoint.Addr()
	}
	return slices.Contains(n.NodeAddrs, a)
}
