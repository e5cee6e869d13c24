package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/policy"
)

// state is policy.Desired rendered into nftables objects.
type state struct {
	sets   map[string][]string          // name -> sorted elements
	chains map[string][]string          // name -> rules
	maps   map[string]map[string]string // name -> key -> verdict
}

func hashName(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return prefix + hex.EncodeToString(h[:8])
}

// renderState computes the objects for d. It is pure.
func renderState(d policy.Desired) state {
	s := state{sets: map[string][]string{}, chains: map[string][]string{}, maps: map[string]map[string]string{}}
	for _, f := range families {
		for _, m := range []string{"np-ingress-", "np-egress-"} {
			s.maps[m+f.suffix] = map[string]string{}
		}
		var cidrs, known []string
		for _, p := range api.Disjoint(d.LocalCIDRs) {
			if p.Addr().Is4() == f.v4 {
				cidrs = append(cidrs, p.String())
			}
		}
		for _, a := range d.Known {
			if a.Is4() == f.v4 {
				known = append(known, a.String())
			}
		}
		s.sets["np-local-"+f.suffix] = sortedUnique(cidrs)
		s.sets["np-known-"+f.suffix] = sortedUnique(known)
	}
	for _, p := range d.Pods {
		for _, dir := range []struct {
			isolated         bool
			allows           []policy.Allow
			admin, baseline  []policy.Rule
			prefix, tiers    string // chain name prefixes: NetworkPolicy's, the Admin tier's
			peer             string // the other end's address field
			verdict, mapName string
		}{
			{p.IngressIsolated, p.Ingress, p.AdminIngress, p.BaselineIngress, ingressPrefix, adminInPrefix, "saddr", "accept", "np-ingress-"},
			{p.EgressIsolated, p.Egress, p.AdminEgress, p.BaselineEgress, egressPrefix, adminEgPrefix, "daddr", "return", "np-egress-"},
		} {
			// The chain after the Admin tier: NetworkPolicy for an isolated
			// pod (what it allows, then drop), otherwise the Baseline tier
			// (falling off its end returns to the forward chain: allowed).
			var tail []string
			switch {
			case dir.isolated:
				for _, a := range dir.allows {
					tail = append(tail, s.matches(a, dir.peer, dir.verdict)...)
				}
				tail = append(sortedUnique(tail), countRef(CounterPolicyDrops)+" drop")
			default:
				for _, r := range dir.baseline {
					tail = append(tail, s.matches(r.Allow, dir.peer, tierVerdict(r.Action, dir.verdict, ""))...)
				}
			}
			var chain string
			if len(tail) > 0 {
				chain = hashName(dir.prefix, tail...)
				s.chains[chain] = tail
			}
			// The Admin tier in precedence order; Pass goes to the tail.
			if len(dir.admin) > 0 {
				var rules []string
				for _, r := range dir.admin {
					rules = append(rules, s.matches(r.Allow, dir.peer, tierVerdict(r.Action, dir.verdict, chain))...)
				}
				if chain != "" {
					rules = append(rules, "goto "+chain)
				}
				chain = hashName(dir.tiers, rules...)
				s.chains[chain] = rules
			}
			if chain == "" {
				continue
			}
			for _, ip := range p.IPs {
				f := "v6"
				if ip.Is4() {
					f = "v4"
				}
				s.maps[dir.mapName+f][ip.String()] = "jump " + chain
			}
		}
	}
	return s
}

// tierVerdict is the verdict of a ClusterNetworkPolicy rule: Accept is the
// direction's (accept at ingress; return at egress, so that the
// receiver's ingress is still asked), Deny drops (counted), Pass goes to
// the chain after the tier (none: back to the forward chain).
func tierVerdict(a policy.Action, accept, after string) string {
	switch a {
	case policy.Accept:
		return accept
	case policy.Deny:
		return countRef(CounterPolicyDrops) + " drop"
	}
	if after == "" {
		return "return"
	}
	return "goto " + after
}

// matches renders the rules matching a's peers and ports, one per family
// and port range, each ending in verdict; peer sets go into s.
func (s state) matches(a policy.Allow, peerField, verdict string) []string {
	var rules []string
	for _, f := range families {
		var peer string
		if !a.AnyPeer {
			var elems []string
			for _, q := range a.Peers {
				if q.Addr().Is4() == f.v4 {
					elems = append(elems, q.Masked().String())
				}
			}
			set := hashName(peerSetPrefix, a.Key) + "-" + f.suffix
			s.sets[set] = sortedUnique(elems)
			peer = knftables.Concat(f.match, peerField, "@"+set)
		} else {
			peer = knftables.Concat("meta nfproto", f.nfproto)
		}
		if len(a.Ports) == 0 {
			rules = append(rules, knftables.Concat(peer, verdict))
			continue
		}
		for _, pr := range a.Ports {
			ports := fmt.Sprint(pr.From)
			if pr.To != pr.From {
				ports = fmt.Sprintf("%d-%d", pr.From, pr.To)
			}
			rules = append(rules, knftables.Concat(peer, "meta l4proto", strings.ToLower(string(pr.Protocol)), "th dport", ports, verdict))
		}
	}
	return rules
}

func sortedUnique(xs []string) []string {
	slices.Sort(xs)
	return slices.Compact(xs)
}
