package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
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
var Reasons = []Reason{ReasonSelf, ReasonDuplicateKey, ReasonCIDROverlap, ReasonInvalid, ReasonContradiction, ReasonNotANode, ReasonOutsideCluster, ReasonCoversNode, ReasonExternalOverlap, ReasonExternalOutside}

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
	// Sort keys computed once: a comparator reading two maps per call was
	// most of Accept's time at 1000 claims.
	type entry struct {
		rank int
		prev bool
		name string
	}
	entries := make([]entry, 0, len(claims))
	for n, c := range claims {
		entries = append(entries, entry{rank(c.Source), prev[n], n})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		if a.prev != b.prev {
			if a.prev {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	order := make([]string, len(entries))
	for i, e := range entries {
		order[i] = e.name
	}

	var accepted []Claim
	var rejected []Rejection
	owner := map[wgtypes.Key]string{self.PublicKey: self.Name}
	taken := newPrefixSet(16 * len(claims)) // pod CIDRs accepted so far
	for _, p := range self.PodCIDRs {
		taken.add(p, self.Name)
	}
	addrs := newPrefixSet(16 * len(claims)) // node addresses accepted so far
	for _, a := range addresses(self) {
		addrs.add(netip.PrefixFrom(a, a.BitLen()), self.Name)
	}
	for _, name := range order {
		c := claims[name]
		if reason, err := bounds.CheckPodCIDRs(c.PodCIDRs); err != nil {
			rejected = append(rejected, Rejection{name, reason, err.Error()})
			continue
		}
		own := addresses(c.NodeInfo)
		if a, p, ok := coversAny(c.PodCIDRs, own, addrs); ok {
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
		case owner[c.PublicKey] != "":
			rejected = append(rejected, Rejection{name, ReasonDuplicateKey, fmt.Sprintf("public key already belongs to %s", owner[c.PublicKey])})
			continue
		}
		if o, p, ok := overlapsAny(c.PodCIDRs, taken); ok {
			rejected = append(rejected, Rejection{name, ReasonCIDROverlap, fmt.Sprintf("pod CIDR %s overlaps %s of %s", p, o.prefix, o.name)})
			continue
		}
		owner[c.PublicKey] = name
		for _, a := range own {
			addrs.add(netip.PrefixFrom(a, a.BitLen()), name)
		}
		for _, p := range c.PodCIDRs {
			taken.add(p, name)
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

func overlapsAny(ps []netip.Prefix, taken *prefixSet) (ownedPrefix, netip.Prefix, bool) {
	for _, p := range ps {
		if t, ok := taken.overlap(p); ok {
			return t, p, true
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

// coversAny finds an address, of the claim's own or of those accepted,
// inside one of its pod CIDRs.
func coversAny(ps []netip.Prefix, own []netip.Addr, accepted *prefixSet) (netip.Addr, netip.Prefix, bool) {
	for _, p := range ps {
		for _, a := range own {
			if p.Contains(a) {
				return a, p, true
			}
		}
		if t, ok := accepted.overlap(p); ok && p.Contains(t.prefix.Addr()) {
			return t.prefix.Addr(), p, true
		}
	}
	return netip.Addr{}, netip.Prefix{}, false
}

func insideTaken(addrs []netip.Addr, taken *prefixSet) (ownedPrefix, netip.Addr, bool) {
	for _, a := range addrs {
		if t, ok := taken.contains(a); ok {
			return t, a, true
		}
	}
	return ownedPrefix{}, netip.Addr{}, false
}
