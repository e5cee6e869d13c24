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
	return accept(self, bounds, previous, claims, &acceptScratch{})
}

// acceptScratch is what Accept builds and drops on every call; a registry
// keeps one between calls (under its lock). At 5000 claims, allocating
// and zeroing it anew was a third of Accept's time, and the collector's
// work after it.
type acceptScratch struct {
	prev         map[string]bool
	entries      []acceptEntry
	owner        map[wgtypes.Key]string
	taken, addrs prefixSet
}

// acceptEntry is a claim's sort key, computed once: a comparator reading
// two maps per call was most of Accept's time at 1000 claims.
type acceptEntry struct {
	rank int
	prev bool
	name string
}

func accept(self NodeInfo, bounds Bounds, previous []string, claims map[string]Claim, sc *acceptScratch) ([]Claim, []Rejection) {
	if sc.prev == nil {
		sc.prev, sc.owner = map[string]bool{}, map[wgtypes.Key]string{}
	}
	clear(sc.prev)
	for _, n := range previous {
		sc.prev[n] = true
	}
	entries := sc.entries[:0]
	for n, c := range claims {
		entries = append(entries, acceptEntry{rank(c.Source), sc.prev[n], n})
	}
	sc.entries = entries
	slices.SortFunc(entries, func(a, b acceptEntry) int {
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

	accepted := make([]Claim, 0, len(claims))
	var rejected []Rejection
	owner := sc.owner
	clear(owner)
	owner[self.PublicKey] = self.Name
	taken := sc.taken.reset(16 * len(claims)) // pod CIDRs accepted so far
	for _, p := range self.PodCIDRs {
		taken.add(p, self.Name)
	}
	addrs := sc.addrs.reset(16 * len(claims)) // node addresses accepted so far
	var ownBuf [8]netip.Addr
	for _, a := range appendAddresses(ownBuf[:0], self) {
		addrs.add(netip.PrefixFrom(a, a.BitLen()), self.Name)
	}
	for _, e := range entries {
		name := e.name
		c := claims[name]
		if reason, err := bounds.CheckPodCIDRs(c.PodCIDRs); err != nil {
			rejected = append(rejected, Rejection{name, reason, err.Error()})
			continue
		}
		own := appendAddresses(ownBuf[:0], c.NodeInfo)
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

// appendAddresses appends a node's underlay addresses to out, each once:
// no pod CIDR may cover one, or traffic to that node would enter the
// tunnel. Judged in Accept's order, like pod CIDRs, so a newcomer cannot
// refuse a node already in the mesh by claiming an address inside its
// range.
func appendAddresses(out []netip.Addr, n NodeInfo) []netip.Addr {
	start := len(out)
	add := func(a netip.Addr) {
		if !slices.Contains(out[start:], a) {
			out = append(out, a)
		}
	}
	for _, a := range n.NodeAddrs {
		add(a)
	}
	for _, ap := range []netip.AddrPort{n.Endpoint, n.GossipAddr} {
		if ap.IsValid() {
			add(ap.Addr())
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
