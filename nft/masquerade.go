package nft

import (
	"context"
	"fmt"
	"net/netip"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/plan"
)

// MasqueradeChain masquerades traffic that this node's pods send to
// addresses outside the cluster: everything whose destination is not in
// NoMasquerade. Pod to pod, pod to node and node to pod stay un-NATed.
const MasqueradeChain = "egress-nat"

// ApplyMasquerade replaces the masquerade chain and its sets in one
// transaction, so there is no moment with half the rules.
func ApplyMasquerade(ctx context.Context, nft knftables.Interface, m plan.Egress) error {
	tx := begin(nft)
	chain := baseChain(MasqueradeChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
		"masquerade pod traffic leaving the cluster")
	tx.Add(chain)
	tx.Flush(chain)
	for _, fam := range families {
		for _, set := range []struct {
			name string
			ps   []netip.Prefix
		}{{podsSet + fam.suffix, m.PodCIDRs}, {"no-masquerade-" + fam.suffix, m.NoMasquerade}, {ClusterPodsSet + fam.suffix, m.ClusterPods}, {directSet + fam.suffix, m.Direct}} {
			s := &knftables.Set{Name: set.name, Type: fam.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}}
			tx.Add(s)
			tx.Flush(s)
			for _, p := range api.Disjoint(set.ps) {
				if p.Addr().Is4() == fam.v4 {
					tx.Add(&knftables.Element{Set: set.name, Key: []string{p.Masked().String()}})
				}
			}
		}
		if m.Enabled {
			tx.Add(&knftables.Rule{Chain: MasqueradeChain, Rule: knftables.Concat(
				fam.match, "saddr", "@"+podsSet+fam.suffix, fam.match, "daddr", "!=", "@no-masquerade-"+fam.suffix, "counter", "masquerade")})
		}
	}
	addStrict(tx, m)
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables masquerade: %w", err)
	}
	return nil
}

// The strict-encryption chains and the set of direct-path pod ranges.
const (
	StrictForwardChain = "strict-forward"
	StrictOutputChain  = "strict-output"
	directSet          = "direct-pods-"
)

// addStrict (re)writes the strict-encryption chains: with m.Strict, a packet
// to a cluster pod address leaves only on the tunnel, on a pod veth, or on
// the underlay to a direct peer's pods. Whatever else would carry it (a
// default route, once a peer's tunnel route is gone) drops it: pods' and
// the node's own traffic alike. Without m.Strict the chains are empty.
func addStrict(tx *knftables.Transaction, m plan.Egress) {
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{StrictForwardChain, knftables.ForwardHook}, {StrictOutputChain, knftables.OutputHook}} {
		chain := baseChain(c.name, knftables.FilterType, c.hook, knftables.FilterPriority,
			"--strict-encryption: pod traffic leaves only through the tunnel or a direct path")
		tx.Add(chain)
		tx.Flush(chain)
		if !m.Strict {
			continue
		}
		addCounter(tx, CounterStrictDrops)
		for _, fam := range families {
			tx.Add(&knftables.Rule{Chain: c.name, Rule: knftables.Concat(
				"oifname", "!=", fmt.Sprintf("{ %q, %q }", m.Tunnel, api.HostVethPrefix+"*"),
				fam.match, "daddr", "@"+ClusterPodsSet+fam.suffix, fam.match, "daddr", "!=", "@"+directSet+fam.suffix,
				countRef(CounterStrictDrops), "drop")})
		}
	}
}
