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
			isolated bool
			allows   []policy.Allow
			prefix   string
			peer     string // the other end's address field
			verdict  string
			maps     string
			addrKey  string
		}{
			{p.IngressIsolated, p.Ingress, ingressPrefix, "saddr", "accept", "np-ingress-", "daddr"},
			{p.EgressIsolated, p.Egress, egressPrefix, "daddr", "return", "np-egress-", "saddr"},
		} {
			if !dir.isolated {
				continue
			}
			var rules []string
			for _, a := range dir.allows {
				for _, f := range families {
					var peer string
					if !a.AnyPeer {
						set := hashName(peerSetPrefix, a.Key) + "-" + f.suffix
						var elems []string
						for _, q := range a.Peers {
							if q.Addr().Is4() == f.v4 {
								elems = append(elems, q.Masked().String())
							}
						}
						s.sets[set] = sortedUnique(elems)
						peer = knftables.Concat(f.match, dir.peer, "@"+set)
					} else {
						peer = knftables.Concat("meta nfproto", f.nfproto)
					}
					if len(a.Ports) == 0 {
						rules = append(rules, knftables.Concat(peer, dir.verdict))
						continue
					}
					for _, pr := range a.Ports {
						ports := fmt.Sprint(pr.From)
						if pr.To != pr.From {
							ports = fmt.Sprintf("%d-%d", pr.From, pr.To)
						}
						rules = append(rules, knftables.Concat(peer, "meta l4proto", strings.ToLower(string(pr.Protocol)), "th dport", ports, dir.verdict))
					}
				}
			}
			rules = append(sortedUnique(rules), "counter drop")
			chain := hashName(dir.prefix, rules...)
			s.chains[chain] = rules
			for _, ip := range p.IPs {
				f := "v6"
				if ip.Is4() {
					f = "v4"
				}
				s.maps[dir.maps+f][ip.String()] = "jump " + chain
			}
		}
	}
	return s
}

func sortedUnique(xs []string) []string {
	slices.Sort(xs)
	return slices.Compact(xs)
}
