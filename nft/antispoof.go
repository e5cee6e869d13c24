package nft

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

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
