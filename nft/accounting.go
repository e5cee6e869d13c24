package nft

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/api"
)

// The named counters that prove where pod traffic went (the agent exports
// them as metrics and in its status):
//
//	pods-tunnel     this node's pods' packets into the tunnel (encrypted)
//	pods-direct     this node's pods' packets to a direct peer's pods on the underlay
//	pods-plaintext  any packet that left this node, not on the tunnel or a pod veth,
//	                for another node's pods outside the direct paths: in the clear
//	                where it should have been encrypted (must read 0)
//	strict-drops    what --strict-encryption dropped instead of sending it so
//	policy-drops    what NetworkPolicy dropped (the isolated pods' chains)
const (
	CounterTunnel      = "pods-tunnel"
	CounterDirect      = "pods-direct"
	CounterPlaintext   = "pods-plaintext"
	CounterStrictDrops = "strict-drops"
	CounterPolicyDrops = "policy-drops"
)

// Counters are every named counter weft keeps, in the order shown.
var Counters = []string{CounterTunnel, CounterDirect, CounterPlaintext, CounterStrictDrops, CounterPolicyDrops}

// AccountingChain counts pod traffic by the way it leaves the node.
const AccountingChain = "accounting"

// accountingRules is the number of rules in AccountingChain.
var accountingRules = 3 * len(families)

// Sets of the egress plan that accounting reads (ApplyMasquerade fills them).
const podsSet = "pods-"

// addCounter adds a named counter to tx; an existing one keeps its values.
func addCounter(tx *knftables.Transaction, name string) {
	tx.Add(&knftables.Counter{Name: name})
}

// countRef is the statement that counts a packet in the named counter.
func countRef(name string) string { return fmt.Sprintf("counter name %q", name) }

// EnsureAccounting installs (or refreshes) the counters and the chain that
// feeds them, at postrouting: what a packet's route finally chose, for the
// pods' packets and the node's own alike. tunnel is the WireGuard
// interface.
func EnsureAccounting(ctx context.Context, nft knftables.Interface, tunnel string) error {
	tx := begin(nft)
	for _, c := range Counters {
		addCounter(tx, c)
	}
	chain := baseChain(AccountingChain, knftables.FilterType, knftables.PostroutingHook, knftables.FilterPriority,
		"count pod traffic by the path it leaves on: tunnel, direct, in the clear")
	tx.Add(chain)
	tx.Flush(chain)
	notTunnel := fmt.Sprintf("oifname != { %q, %q, %q }", tunnel, api.HostVethPrefix+"*", "lo")
	for _, fam := range families {
		// The sets are ApplyMasquerade's; adding them here is a no-op when
		// they exist, and lets this chain be written first.
		for _, s := range []string{podsSet, ClusterPodsSet, directSet} {
			tx.Add(&knftables.Set{Name: s + fam.suffix, Type: fam.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		}
		pods, cluster, direct := "@"+podsSet+fam.suffix, "@"+ClusterPodsSet+fam.suffix, "@"+directSet+fam.suffix
		tx.Add(&knftables.Rule{Chain: AccountingChain, Rule: knftables.Concat(
			"oifname", fmt.Sprintf("%q", tunnel), fam.match, "saddr", pods, countRef(CounterTunnel))})
		tx.Add(&knftables.Rule{Chain: AccountingChain, Rule: knftables.Concat(
			notTunnel, fam.match, "saddr", pods, fam.match, "daddr", direct, countRef(CounterDirect))})
		tx.Add(&knftables.Rule{Chain: AccountingChain, Rule: knftables.Concat(
			notTunnel, fam.match, "daddr", cluster, fam.match, "daddr", "!=", direct, fam.match, "daddr", "!=", pods, countRef(CounterPlaintext))})
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables accounting: %w", err)
	}
	return nil
}

// Count is one named counter's values.
type Count struct{ Packets, Bytes uint64 }

// ReadCounters reads weft's named counters (one listing); a counter that
// does not exist (yet) is absent from the map.
func ReadCounters(ctx context.Context, nft knftables.Interface) (map[string]Count, error) {
	cs, err := nft.ListCounters(ctx)
	if err != nil {
		return nil, fmt.Errorf("nftables list counters: %w", err)
	}
	out := make(map[string]Count, len(cs))
	for _, c := range cs {
		var n Count
		if c.Packets != nil {
			n.Packets = *c.Packets
		}
		if c.Bytes != nil {
			n.Bytes = *c.Bytes
		}
		out[c.Name] = n
	}
	return out, nil
}
