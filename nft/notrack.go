package nft

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// notrackChains keep WireGuard's own UDP transport out of conntrack: the
// encrypted packets between nodes are never NATed or filtered statefully,
// and tracking each of them costs throughput and latency on every node
// where anything (weft's egress NAT, kube-proxy) turns conntrack on.
var notrackChains = []struct {
	name string
	hook knftables.BaseChainHook
	dir  string
	addr string
}{{"transport-in", knftables.PreroutingHook, "dport", "daddr"}, {"transport-out", knftables.OutputHook, "sport", "saddr"}}

// EnsureTransportNotrack exempts UDP to and from the WireGuard listen port
// from connection tracking.
func EnsureTransportNotrack(ctx context.Context, nft knftables.Interface, listenPort int) error {
	tx := begin(nft)
	for _, c := range notrackChains {
		chain := baseChain(c.name, knftables.FilterType, c.hook, knftables.RawPriority, "WireGuard transport is not tracked")
		tx.Add(chain)
		tx.Flush(chain)
		// Only this host's own transport: a pod's traffic to or from that
		// port number elsewhere is forwarded and stays tracked (its NAT and
		// NetworkPolicy depend on conntrack).
		tx.Add(&knftables.Rule{Chain: c.name, Rule: knftables.Concat("fib", c.addr, "type local", "udp", c.dir, fmt.Sprint(listenPort), "notrack")})
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables transport notrack: %w", err)
	}
	return nil
}
