package nft

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// AntiSpoofChain drops packets whose source address is a pod's but that
// did not come the way that pod's packets come (IPv4 and IPv6):
//   - on a pod's host veth, any source not routed back through that same
//     veth (reverse-path filtering: the pod's own address only);
//   - a source routed into the tunnel (another node's pods, an external
//     peer) that arrives on any other link, and a source routed to a local
//     pod's veth that arrives on any other link, bound for anything but
//     this node itself. Without these a host on the underlay reaches local
//     pods with a remote pod's address, past WireGuard and into the
//     NetworkPolicy rules that admit that pod. Packets to the node's own
//     addresses stay allowed: a pod's packet to another node's host
//     network (the API server) crosses the underlay with the pod's address
//     (no NAT); a direct path's pod ranges route over the underlay, so
//     they pass too.
const AntiSpoofChain = "antispoof"

// antiSpoofRules is the number of rules in AntiSpoofChain.
const antiSpoofRules = 3

// EnsureAntiSpoof installs (or refreshes) the anti-spoofing chain for host
// veths whose names start with vethPrefix and the tunnel interface named
// tunnel. It replaces the chain's rules in one transaction, so there is no
// moment without them.
func EnsureAntiSpoof(ctx context.Context, nft knftables.Interface, vethPrefix, tunnel string) error {
	tx := begin(nft)
	chain := baseChain(AntiSpoofChain, knftables.FilterType, knftables.PreroutingHook, knftables.RawPriority,
		"drop pod packets with a source that is not the pod's")
	tx.Add(chain)
	tx.Flush(chain)
	tx.Add(&knftables.Rule{
		Chain: AntiSpoofChain,
		Rule:  knftables.Concat("iifname", fmt.Sprintf("%q", vethPrefix+"*"), "fib saddr . iif oif missing", "counter", "drop"),
	})
	tx.Add(&knftables.Rule{
		Chain: AntiSpoofChain,
		Rule: knftables.Concat("iifname", "!=", fmt.Sprintf("%q", tunnel), "fib saddr oifname", fmt.Sprintf("%q", tunnel),
			"fib daddr type != local", "counter", "drop"),
	})
	tx.Add(&knftables.Rule{
		Chain: AntiSpoofChain,
		Rule: knftables.Concat("iifname", "!=", fmt.Sprintf("%q", vethPrefix+"*"), "fib saddr oifname", fmt.Sprintf("%q", vethPrefix+"*"),
			"fib daddr type != local", "counter", "drop"),
	})
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("nftables anti-spoofing: %w", err)
	}
	return nil
}
