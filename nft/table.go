// Package nft is weft's nftables table (inet weft) and everything in it:
// anti-spoofing on pod veths, the WireGuard transport kept out of
// conntrack, the egress NAT, and the NetworkPolicy chains, sets and maps.
// Each concern has its file; this one holds the table plumbing they share.
// The desired state comes from pure packages (plan, policy); this package
// only writes it, through knftables.
package nft

import (
	"fmt"

	"sigs.k8s.io/knftables"
)

// Table is the nftables table weft owns, in the inet family.
const Table = "weft"

// baseChain is a chain of weft's table attached to a netfilter hook.
func baseChain(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, comment string) *knftables.Chain {
	return &knftables.Chain{Name: name, Type: &typ, Hook: &hook, Priority: &prio, Comment: &comment}
}

// Open opens weft's table (inet weft) on this host's nftables: what every
// writer here is given (tests give knftables' fake instead).
func Open() (knftables.Interface, error) {
	nft, err := knftables.New(knftables.InetFamily, Table)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return nft, nil
}

// begin starts a transaction that (re)creates weft's table, so every
// writer works the same whether the table exists yet or not.
func begin(nft knftables.Interface) *knftables.Transaction {
	tx := nft.NewTransaction()
	addTable(tx)
	return tx
}

// addTable (re)creates weft's table in tx; it is a no-op when it exists.
func addTable(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("weft")})
}

// families are the address families weft's table handles: set name
// suffix, set element type, payload keyword and meta nfproto value.
var families = []struct {
	suffix, addrType, match, nfproto string
	v4                               bool
}{{"v4", "ipv4_addr", "ip", "ipv4", true}, {"v6", "ipv6_addr", "ip6", "ipv6", false}}
