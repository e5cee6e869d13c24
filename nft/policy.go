package nft

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/policy"
)

// The NetworkPolicy data plane, in weft's table:
//
//	chain np-forward (hook forward, priority filter)
//	    ct state established,related accept      replies, and connections open before a change (README)
//	    <source or destination a local pod address not yet programmed> drop
//	    ip saddr vmap @np-egress-v4              egress-isolated pod -> its chain (return = allowed)
//	    ip daddr vmap @np-ingress-v4             ingress-isolated pod -> its chain (accept = allowed)
//	    (the same for ip6)
//	chain np-ain-<hash>, np-aeg-<hash>           ClusterNetworkPolicy's Admin tier, in precedence order:
//	                                             Accept, Deny, Pass = goto the chain below
//	chain np-in-<hash>, np-eg-<hash>             NetworkPolicy (isolated pods), or else the Baseline tier;
//	                                             one per distinct rule list, shared by the pods that have it
//	set np-p-<hash>-v4 / -v6                     the peers of one policy rule (interval set)
//
// Pods are only ever forwarded to and from, so the forward hook sees all
// their traffic except with their own node, which NetworkPolicy always
// allows (the node's own packets leave through output, the pod's packets
// to the node arrive through input). Policy chains are named by a hash of
// their rules, so a chain never changes: a pod whose policy changes is
// pointed at another chain. Peer sets are named by their rule, so pods
// coming and going change set elements, not rules.
const (
	ForwardChain  = "np-forward"
	chainPrefix   = "np-"
	ingressPrefix = "np-in-"
	egressPrefix  = "np-eg-"
	adminInPrefix = "np-ain-" // the Admin tier of ClusterNetworkPolicy, ingress
	adminEgPrefix = "np-aeg-" // and egress
	peerSetPrefix = "np-p-"
)

// Enforcer programs policy.Desired states into nftables, changing only what
// differs from the last state it programmed. The first Apply rewrites
// weft's policy objects completely (in one transaction, so the rules of the
// previous run stay in force until the new ones replace them).
type Enforcer struct {
	nft knftables.Interface

	// mu guards last and forgot for PolicyChains and Forget (other
	// goroutines); it is never held across nft. Apply has one caller at a
	// time (the policy controller's sync).
	mu     sync.Mutex
	last   *state
	forgot uint64 // Forget calls: one during an Apply keeps last forgotten
}

// NewEnforcer opens weft's table; nft may be a knftables fake in tests.
func NewEnforcer(nft knftables.Interface) (*Enforcer, error) {
	if nft == nil {
		var err error
		if nft, err = knftables.New(knftables.InetFamily, Table); err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
	}
	return &Enforcer{nft: nft}, nil
}

// Apply programs d. It reports the number of nftables operations it ran
// (0: nothing changed). Calls must not overlap (one caller).
func (e *Enforcer) Apply(ctx context.Context, d policy.Desired) (int, error) {
	want := renderState(d)
	e.mu.Lock()
	last, forgot := e.last, e.forgot
	e.mu.Unlock()
	tx := e.nft.NewTransaction()
	if last == nil {
		if err := e.rewrite(ctx, tx, want); err != nil {
			return 0, err
		}
	} else {
		update(tx, *last, want)
	}
	n := tx.NumOperations()
	if n == 0 {
		return 0, nil
	}
	err := e.nft.Run(ctx, tx)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err != nil:
		e.last = nil // unknown now: rewrite everything next time
		return 0, fmt.Errorf("nftables network policy: %w", err)
	case e.forgot == forgot:
		e.last = &want
	}
	return n, nil
}

func setObj(name string) *knftables.Set {
	typ := "ipv4_addr"
	if strings.HasSuffix(name, "-v6") {
		typ = "ipv6_addr"
	}
	return &knftables.Set{Name: name, Type: typ, Flags: []knftables.SetFlag{knftables.IntervalFlag}}
}

func mapObj(name string) *knftables.Map {
	typ := "ipv4_addr : verdict"
	if strings.HasSuffix(name, "-v6") {
		typ = "ipv6_addr : verdict"
	}
	return &knftables.Map{Name: name, Type: typ}
}

// rewrite replaces every policy object: existing sets and maps are flushed
// and refilled, chains of the previous run that are not wanted are deleted
// (after the map entries jumping to them), the forward chain is rebuilt.
func (e *Enforcer) rewrite(ctx context.Context, tx *knftables.Transaction, want state) error {
	addTable(tx)
	addCounter(tx, CounterPolicyDrops) // the isolated pods' chains count their drops there
	var oldChains, oldSets, oldMaps []string
	for _, kind := range []struct {
		typ string
		out *[]string
	}{{"chains", &oldChains}, {"sets", &oldSets}, {"maps", &oldMaps}} {
		names, err := e.nft.List(ctx, kind.typ)
		if err != nil && !knftables.IsNotFound(err) {
			return fmt.Errorf("nftables list %s: %w", kind.typ, err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, chainPrefix) {
				*kind.out = append(*kind.out, n)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		s := setObj(name)
		tx.Add(s)
		tx.Flush(s)
		for _, el := range want.sets[name] {
			tx.Add(&knftables.Element{Set: name, Key: []string{el}})
		}
	}
	// Old chains are emptied first so that nothing jumps from them and no
	// rule holds a set that goes away.
	for _, name := range oldChains {
		if name != ForwardChain {
			tx.Flush(&knftables.Chain{Name: name})
		}
	}
	addChains(tx, want.chains, slices.Sorted(maps.Keys(want.chains)))
	for _, name := range slices.Sorted(maps.Keys(want.maps)) {
		m := mapObj(name)
		tx.Add(m)
		tx.Flush(m)
		for _, k := range slices.Sorted(maps.Keys(want.maps[name])) {
			tx.Add(&knftables.Element{Map: name, Key: []string{k}, Value: []string{want.maps[name][k]}})
		}
	}
	addForward(tx)
	for _, name := range oldChains {
		if _, ok := want.chains[name]; !ok && name != ForwardChain {
			tx.Delete(&knftables.Chain{Name: name})
		}
	}
	for _, name := range oldMaps {
		if _, ok := want.maps[name]; !ok {
			tx.Delete(&knftables.Map{Name: name})
		}
	}
	for _, name := range oldSets {
		if _, ok := want.sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
	return nil
}

// addChains writes the named chains: every chain first, then their rules,
// since a rule may go to another of them (the Admin tier's Pass).
func addChains(tx *knftables.Transaction, chains map[string][]string, names []string) {
	for _, name := range names {
		c := &knftables.Chain{Name: name}
		tx.Add(c)
		tx.Flush(c)
	}
	for _, name := range names {
		for _, r := range chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
}

// addForward (re)writes the base chain that sends pod traffic to the maps.
func addForward(tx *knftables.Transaction) {
	c := baseChain(ForwardChain, knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority,
		"Kubernetes NetworkPolicy for this node's pods")
	tx.Add(c)
	tx.Flush(c)
	for _, r := range forwardRules() {
		tx.Add(r)
	}
}

// forwardRules are the forward chain's rules, in order.
func forwardRules() []*knftables.Rule {
	rules := []*knftables.Rule{{Chain: ForwardChain, Rule: "ct state established,related accept"}}
	for _, f := range families {
		for _, dir := range []string{"saddr", "daddr"} {
			rules = append(rules, &knftables.Rule{Chain: ForwardChain, Rule: knftables.Concat(
				f.match, dir, "@np-local-"+f.suffix, f.match, dir, "!=", "@np-known-"+f.suffix, "counter drop"),
				Comment: knftables.PtrTo("not yet programmed")})
		}
	}
	for _, f := range families {
		rules = append(rules, &knftables.Rule{Chain: ForwardChain, Rule: knftables.Concat(f.match, "saddr vmap", "@np-egress-"+f.suffix)})
	}
	for _, f := range families {
		rules = append(rules, &knftables.Rule{Chain: ForwardChain, Rule: knftables.Concat(f.match, "daddr vmap", "@np-ingress-"+f.suffix)})
	}
	return rules
}

// update writes the difference between two states: new sets and chains
// first, then element changes (deletions before additions, so interval
// sets never hold overlapping elements), then what is gone.
func update(tx *knftables.Transaction, old, want state) {
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		before, had := old.sets[name]
		if !had {
			tx.Add(setObj(name))
		}
		gone, added := diff(before, want.sets[name])
		for _, el := range gone {
			tx.Delete(&knftables.Element{Set: name, Key: []string{el}})
		}
		for _, el := range added {
			tx.Add(&knftables.Element{Set: name, Key: []string{el}})
		}
	}
	var added []string
	for _, name := range slices.Sorted(maps.Keys(want.chains)) {
		if _, had := old.chains[name]; !had {
			added = append(added, name)
		}
	}
	addChains(tx, want.chains, added)
	for _, name := range slices.Sorted(maps.Keys(want.maps)) {
		before, after := old.maps[name], want.maps[name]
		for _, k := range slices.Sorted(maps.Keys(before)) {
			if v, ok := after[k]; !ok || v != before[k] {
				tx.Delete(&knftables.Element{Map: name, Key: []string{k}})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(after)) {
			if v, ok := before[k]; !ok || v != after[k] {
				tx.Add(&knftables.Element{Map: name, Key: []string{k}, Value: []string{after[k]}})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old.chains)) {
		if _, ok := want.chains[name]; !ok {
			tx.Flush(&knftables.Chain{Name: name})
			tx.Delete(&knftables.Chain{Name: name})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old.sets)) {
		if _, ok := want.sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
}

// diff returns what is in a but not b, and in b but not a (both sorted).
func diff(a, b []string) (gone, added []string) {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			gone = append(gone, x)
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			added = append(added, x)
		}
	}
	return gone, added
}
