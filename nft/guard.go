package nft

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// GuardChain drops what pods send to the agent's own ports on this host:
// gossip (TCP and UDP), the WireGuard transport and the key exchange, from local pods (on
// their veths), through the tunnel, and from any pod address. Nodes reach those on
// the underlay; a pod, local (on its veth) or remote (through the tunnel),
// has no business there, and gossip is where an unauthenticated sender can
// make memberlist read and log.
const GuardChain = "agent-ports"

// ClusterPodsSet (+ "v4" or "v6") holds every pod range of the cluster.
const ClusterPodsSet = "cluster-pods-"

// EnsureAgentPortGuard installs (or refreshes) the guard chain for pod
// veths named vethPrefix* and the tunnel interface tunnel.
// ports are the agent's own (gossip, WireGuard, key exchange; 0: none).
func EnsureAgentPortGuard(ctx context.Context, nft knftables.Interface, vethPrefix, tunnel string, ports ...int) error {
	tx := begin(nft)
	chain := baseChain(GuardChain, knftables.FilterType, knftables.InputHook, knftables.FilterPriority,
		"pods may not reach the agent's gossip and WireGuard ports")
	tx.Add(chain)
	tx.Flush(chain)
	// The pod sources: what arrives on a pod veth or the tunnel, and any
	// pod address (a remote pod reaches this node's underlay address
	// through its own node, un-NATed). ApplyMasquerade fills the cluster's
	// pod sets on every mesh change; adding them here is a no-op when they
	// exist.
	var list []string
	for _, p := range ports {
		if p > 0 {
			list = append(list, strconv.Itoa(p))
		}
	}
	match := fmt.Sprintf("meta l4proto { tcp, udp } th dport { %s }", strings.Join(list, ", "))
	tx.Add(&knftables.Rule{Chain: GuardChain, Rule: knftables.Concat(
		"iifname", fmt.Sprintf("{ %q, %q }", vethPrefix+"*", tunnel), match, "counter", "drop")})
	for _, fam := range families {
		tx.Add(&knftables.Set{Name: ClusterPodsSet + fam.suffix, Type: fam.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		tx.Add(&knftables.Rule{Chain: GuardChain, Rule: knftables.Concat(
			fam.match, "saddr", "@"+ClusterPodsSet+fam.suffix, match, "counter", "drop")})
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables agent port guard: %w", err)
	}
	return nil
}

// Damaged reports which of want's chains (name -> the number of rules weft
// wrote there) are missing from weft's table or hold fewer rules: what an
// `nft flush ruleset`, a deleted table or a flushed chain leaves. It only
// reads: two listings (chains, and every rule without set elements).
func Damaged(ctx context.Context, nft knftables.Interface, want map[string]int) ([]string, error) {
	chains, err := nft.List(ctx, "chains")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("nftables list chains: %w", err)
	}
	// One listing of every rule in the table (terse: no set elements).
	rules, err := nft.ListRules(ctx, "")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("nftables list table: %w", err)
	}
	count := map[string]int{}
	for _, r := range rules {
		count[r.Chain]++
	}
	var bad []string
	for name, n := range want {
		if !slices.Contains(chains, name) || count[name] < n {
			bad = append(bad, name)
		}
	}
	slices.Sort(bad)
	return bad, nil
}

// BaseChains are the chains weft writes outside NetworkPolicy, with their
// rule counts, for Damaged.
func BaseChains(masquerade, strict bool) map[string]int {
	want := map[string]int{AntiSpoofChain: antiSpoofRules, GuardChain: 1 + len(families), AccountingChain: accountingRules, MasqueradeChain: 0, StrictForwardChain: 0, StrictOutputChain: 0}
	if strict {
		want[StrictForwardChain], want[StrictOutputChain] = len(families), len(families)
	}
	for _, c := range notrackChains {
		want[c.name] = 1
	}
	if masquerade {
		want[MasqueradeChain] = len(families)
	}
	return want
}

// PolicyChains are the NetworkPolicy chains of the last state e programmed
// (the forward chain with its rules, the others by name), for Damaged.
func (e *Enforcer) PolicyChains() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	want := map[string]int{ForwardChain: len(forwardRules())}
	if e.last != nil {
		for name, rules := range e.last.chains {
			want[name] = len(rules)
		}
	}
	return want
}

// Forget makes the next Apply rewrite every policy object, as the first
// does: for when something outside weft changed them.
func (e *Enforcer) Forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.last = nil
	e.forgot++
}
