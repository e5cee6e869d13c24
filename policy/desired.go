package policy

import "net/netip"

// Desired is everything the NetworkPolicy data plane of one node holds.
type Desired struct {
	// LocalCIDRs are this node's pod ranges; an address in them that is not
	// in Known is dropped in both directions (fail closed).
	LocalCIDRs []netip.Prefix
	// Known are the local addresses weft has programmed: pods (with or
	// without policy) and the node's own addresses in its pod ranges.
	Known []netip.Addr
	Pods  []PodPolicy
}
