package mesh

import (
	"net/netip"
	"slices"

	"github.com/weftnet/weft/plan"
)

// The desired state is plan's (a pure package); mesh applies it.
type (
	State = plan.Mesh
	Peer  = plan.Peer
	Route = plan.Route
)

// samePrefixes reports whether a and b hold the same prefixes in any order.
func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := sortedPrefixes(a), sortedPrefixes(b)
	return slices.Equal(as, bs)
}

func sortedPrefixes(p []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(p))
	for i, x := range p {
		out[i] = x.Masked()
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
