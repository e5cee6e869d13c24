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

// ApplyMasquerade brings the masquerade chain and its sets from prev (what
// the last successful call wrote; nil: unknown) to m in one transaction, so
// there is no moment with half the rules. When only the sets' members
// differ it adds and deletes just those elements: at thousands of nodes the
// sets hold every node's pod ranges and address, and writing them whole for
// each Node change took nft a tenth of a second or more. Otherwise (the
// first write, after a failed one, or a chain that changes) it replaces
// the chain and the sets whole.
func ApplyMasquerade(ctx context.Context, nft knftables.Interface, m plan.Egress, prev *plan.Egress) error {
	if prev != nil && prev.SameChains(m) {
		tx := nft.NewTransaction() // no table: if it is gone, this fails and the caller writes all
		olds := egressSets(*prev)
		for name, ps := range egressSets(m) {
			add, del := api.DiffPrefixes(api.Disjoint(ps), api.Disjoint(olds[name]))
			// Deletes first: what stays of the old members is in the new,
			// disjoint, set, so no added interval overlaps one left.
			for _, p := range del {
				tx.Delete(&knftables.Element{Set: name, Key: []string{p.String()}})
			}
			for _, p := range add {
				tx.Add(&knftables.Element{Set: name, Key: []string{p.String()}})
			}
		}
		if tx.NumOperations() == 0 {
			return nil
		}
		if err := nft.Run(ctx, tx); err != nil {
			return fmt.Errorf("nftables masquerade sets: %w", err)
		}
		return nil
	}
	tx := begin(nft)
	chain := baseChain(MasqueradeChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
		"masquerade pod traffic leaving the cluster")
	tx.Add(chain)
	tx.Flush(chain)
	sets := egressSets(m)
	for _, fam := range families {
		for _, set := range []string{podsSet, noMasqueradeSet, ClusterPodsSet, directSet} {
			name := set + fam.suffix
			s := &knftables.Set{Name: name, Type: fam.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}}
			tx.Add(s)
			tx.Flush(s)
			for _, p := range api.Disjoint(sets[name]) {
				tx.Add(&knftables.Element{Set: name, Key: []string{p.String()}})
			}
		}
		if m.Enabled {
			tx.Add(&knftables.Rule{Chain: MasqueradeChain, Rule: knftables.Concat(
				fam.match, "saddr", "@"+podsSet+fam.suffix, fam.match, "daddr", "!=", "@"+noMasqueradeSet+fam.suffix, "counter", "masquerade")})
		}
	}
	addStrict(tx, m)
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables masquerade: %w", err)
	}
	return nil
}

// egressSets are the ranges m puts in each of its sets, by set name (one
// set per family, each holding that family's ranges only).
func egressSets(m plan.Egress) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, fam := range families {
		for set, ps := range map[string][]netip.Prefix{podsSet: m.PodCIDRs, noMasqueradeSet: m.NoMasquerade, ClusterPodsSet: m.ClusterPods, directSet: m.Direct} {
			var in []netip.Prefix
			for _, p := range ps {
				if p.Addr().Is4() == fam.v4 {
					in = append(in, p)
				}
			}
			out[set+fam.suffix] = in
		}
	}
	return out
}

// noMasqueradeSet holds the destinations reached without NAT.
const noMasqueradeSet = "no-masquerade-"

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
