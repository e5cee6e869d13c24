package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Reason says why a claim was refused: the label of weft_peer_rejections_total.
type Reason string

// Rejection reasons.
const (
	ReasonSelf           Reason = "self"
	ReasonDuplicateKey   Reason = "duplicate-key"
	ReasonCIDROverlap    Reason = "cidr-overlap"
	ReasonInvalid        Reason = "invalid"
	ReasonContradiction  Reason = "gossip-contradicts-node"
	ReasonNotANode       Reason = "not-a-node"
	ReasonOutsideCluster Reason = "outside-cluster-cidr"
	ReasonCoversNode     Reason = "covers-node-address"
)

// Reasons lists every Reason (for metrics, which start each at zero).
var Reasons = []Reason{ReasonSelf, ReasonDuplicateKey, ReasonCIDROverlap, ReasonInvalid, ReasonContradiction, ReasonNotANode, ReasonOutsideCluster, ReasonCoversNode, ReasonExternalOverlap}

// Rejection says why a node's claim was not installed.
type Rejection struct {
	Name   string
	Reason Reason
	Detail string
}

// rank orders claims for Accept: Node objects first, provisional gossip last.
func rank(source Source) int {
	switch source {
	case SourceKubernetes:
		return 0
	case SourceProvisional:
		return 2
	}
	return 1
}

// Accept decides which claims become peers. It is pure: given this node, the
// names accepted last time and the current claims, it returns the peers to
// install and the claims refused. Claims are weighed by source (Node objects,
// then gossip and cache, then provisional gossip), then peers accepted before
// keep precedence, so a newcomer can never take a range from a node already
// in the mesh; last the name decides, so every node reaches the same answer.
// A claim whose pod CIDRs leave the cluster's ranges or cover the underlay
// or any node's address (its own, this node's, another claim's) is refused
// whatever its rank.
func Accept(self NodeInfo, bounds Bounds, previous []string, claims map[string]Claim) ([]Claim, []Rejection) {
	prev := map[string]bool{}
	for _, n := range previous {
		prev[n] = true
	}
	order := make([]string, 0, len(claims))
	for n := range claims {
		order = append(order, n)
	}
	slices.SortFunc(order, func(a, b string) int {
		if ra, rb := rank(claims[a].Source), rank(claims[b].Source); ra != rb {
			return ra - rb
		}
		if prev[a] != prev[b] {
			if prev[a] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})

	var accepted []Claim
	var rejected []Rejection
	owner := map[string]string{self.PublicKey.String(): self.Name}
	var taken []ownedPrefix
	for _, p := range self.PodCIDRs {
		taken = append(taken, ownedPrefix{p, self.Name})
	}
	addrs := addresses(self)
	for _, name := range order {
		c := claims[name]
		if reason, err := bounds.CheckPodCIDRs(c.PodCIDRs); err != nil {
			rejected = append(rejected, Rejection{name, reason, err.Error()})
			continue
		}
		own := addresses(c.NodeInfo)
		if a, p, ok := coversAny(c.PodCIDRs, append(own, addrs...)); ok {
			rejected = append(rejected, Rejection{name, ReasonCoversNode, fmt.Sprintf("pod CIDR %s covers node address %s", p, a)})
			continue
		}
		if t, a, ok := insideTaken(own, taken); ok {
			rejected = append(rejected, Rejection{name, ReasonCoversNode, fmt.Sprintf("node address %s is inside pod CIDR %s of %s", a, t.prefix, t.name)})
			continue
		}
		switch {
		case name == self.Name:
			rejected = append(rejected, Rejection{name, ReasonSelf, "a peer uses this node's own name"})
			continue
		case owner[c.PublicKey.String()] != "":
			rejected = append(rejected, Rejection{name, ReasonDuplicateKey, fmt.Sprintf("public key already belongs to %s", owner[c.PublicKey.String()])})
			continue
		}
		if o, p, ok := overlapsAny(c.PodCIDRs, taken); ok {
			rejected = append(rejected, Rejection{name, ReasonCIDROverlap, fmt.Sprintf("pod CIDR %s overlaps %s of %s", p, o.prefix, o.name)})
			continue
		}
		owner[c.PublicKey.String()] = name
		addrs = append(addrs, own...)
		for _, p := range c.PodCIDRs {
			taken = append(taken, ownedPrefix{p, name})
		}
		accepted = append(accepted, c)
	}
	slices.SortFunc(accepted, func(a, b Claim) int { return strings.Compare(a.Name, b.Name) })
	return accepted, rejected
}

type ownedPrefix struct {
	prefix netip.Prefix
	name   string
}

func overlapsAny(ps []netip.Prefix, taken []ownedPrefix) (ownedPrefix, netip.Prefix, bool) {
	for _, p := range ps {
		for _, t := range taken {
			if p.Overlaps(t.prefix) {
				return t, p, true
			}
		}
	}
	return ownedPrefix{}, netip.Prefix{}, false
}

// addresses are a node's underlay addresses: no pod CIDR may cover one, or
// traffic to that node would enter the tunnel. Judged in Accept's order,
// like pod CIDRs, so a newcomer cannot refuse a node already in the mesh by
// claiming an address inside its range.
func addresses(n NodeInfo) []netip.Addr {
	out := slices.Clone(n.NodeAddrs)
	for _, ap := range []netip.AddrPort{n.Endpoint, n.GossipAddr} {
		if ap.IsValid() {
			out = append(out, ap.Addr())
		}
	}
	return out
}

func coversAny(ps []netip.Prefix, addrs []netip.Addr) (netip.Addr, netip.Prefix, bool) {
	for _, p := range ps {
		for _, a := range addrs {
			if p.Contains(a) {
				return a, p, true
			}
		}
	}
	return netip.Addr{}, netip.Prefix{}, false
}

func insideTaken(addrs []netip.Addr, taken []ownedPrefix) (ownedPrefix, netip.Addr, bool) {
	for _, a := range addrs {
		for _, t := range taken {
			if t.prefix.Contains(a) {
				return t, a, true
			}
		}
	}
	return ownedPrefix{}, netip.Addr{}, false
}
