package policy

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// Table is the nftables table weft owns, in the inet family.
const Table = "weft"

// AntiSpoofChain drops packets that arrive on a pod's host veth with a
// source address that is not routed back through that same veth, i.e. any
// source other than the pod's own (reverse-path filtering, IPv4 and IPv6).
const AntiSpoofChain = "antispoof"

// EnsureAntiSpoof installs (or refreshes) the anti-spoofing chain for host
// veths whose names start with vethPrefix. It replaces the chain's rules in
// one transaction, so there is no moment without them.
func EnsureAntiSpoof(ctx context.Context, vethPrefix string) error {
	nft, tx, err := begin()
	if err != nil {
		return err
	}
	chain := baseChain(AntiSpoofChain, knftables.FilterType, knftables.PreroutingHook, knftables.RawPriority,
		"drop pod packets with a source that is not the pod's")
	tx.Add(chain)
	tx.Flush(chain)
	tx.Add(&knftables.Rule{
		Chain: AntiSpoofChain,
		Rule:  knftables.Concat("iifname", fmt.Sprintf("%q", vethPrefix+"*"), "fib saddr . iif oif missing", "counter", "drop"),
	})
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables anti-spoofing: %w", err)
	}
	return nil
}

// baseChain is a chain of weft's table attached to a netfilter hook.
func baseChain(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, comment string) *knftables.Chain {
	return &knftables.Chain{Name: name, Type: &typ, Hook: &hook, Priority: &prio, Comment: &comment}
}

// begin opens weft's table and starts a transaction that (re)creates it, so
// every writer works the same whether the table exists yet or not.
func begin() (knftables.Interface, *knftables.Transaction, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, nil, fmt.Errorf("nftables: %w", err)
	}
	tx := nft.NewTransaction()
	addTable(tx)
	return nft, tx, nil
}

// addTable (re)creates weft's table in tx; it is a no-op when it exists.
func addTable(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("weft")})
}
