package policy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"sigs.k8s.io/knftables"
)

// MasqueradeChain masquerades traffic that this node's pods send to
// addresses outside the cluster: everything whose destination is not in
// NoMasquerade. Pod to pod, pod to node and node to pod stay un-NATed.
const MasqueradeChain = "egress-nat"

// Masquerade is the desired egress NAT of one node.
type Masquerade struct {
	Enabled bool
	// PodCIDRs are this node's pod ranges: sources to masquerade.
	PodCIDRs []netip.Prefix
	// NoMasquerade are destinations reached without NAT: every node's pod
	// CIDRs, the nodes' own addresses and the operator's extra ranges.
	NoMasquerade []netip.Prefix
}

// Equal reports whether m and o program the same rules.
func (m Masquerade) Equal(o Masquerade) bool {
	return m.Enabled == o.Enabled && slices.Equal(m.PodCIDRs, o.PodCIDRs) && slices.Equal(m.NoMasquerade, o.NoMasquerade)
}

// ApplyMasquerade replaces the masquerade chain and its sets in one
// transaction, so there is no moment with half the rules.
func ApplyMasquerade(ctx context.Context, m Masquerade) error {
	nft, tx, err := begin()
	if err != nil {
		return err
	}
	chain := baseChain(MasqueradeChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
		"masquerade pod traffic leaving the cluster")
	tx.Add(chain)
	tx.Flush(chain)
	for _, fam := range families {
		for _, set := range []struct {
			name string
			ps   []netip.Prefix
		}{{"pods-" + fam.suffix, m.PodCIDRs}, {"no-masquerade-" + fam.suffix, m.NoMasquerade}} {
			s := &knftables.Set{Name: set.name, Type: fam.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}}
			tx.Add(s)
			tx.Flush(s)
			for _, p := range Disjoint(set.ps) {
				if p.Addr().Is4() == fam.v4 {
					tx.Add(&knftables.Element{Set: set.name, Key: []string{p.Masked().String()}})
				}
			}
		}
		if m.Enabled {
			tx.Add(&knftables.Rule{Chain: MasqueradeChain, Rule: knftables.Concat(
				fam.match, "saddr", "@pods-"+fam.suffix, fam.match, "daddr", "!=", "@no-masquerade-"+fam.suffix, "counter", "masquerade")})
		}
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables masquerade: %w", err)
	}
	return nil
}

// Disjoint returns ps without prefixes that another one covers, sorted, so
// they can be elements of one interval set. Two prefixes either nest or do
// not overlap at all, so after sorting by address (wider first at the same
// address) one sweep with a stack of the open covering prefixes suffices:
// O(n log n), which matters for rules that admit thousands of pods.
func Disjoint(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		sorted = append(sorted, p.Masked())
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out, open []netip.Prefix
	for _, p := range sorted {
		for len(open) > 0 && !open[len(open)-1].Contains(p.Addr()) {
			open = open[:len(open)-1]
		}
		if len(open) > 0 && open[len(open)-1].Bits() <= p.Bits() {
			continue // covered (or a duplicate)
		}
		out = append(out, p)
		open = append(open, p)
	}
	return out
}
