package api

import (
	"net/netip"
	"slices"
)

// FirstAddress is the address a node owns in each of its pod CIDRs
// (10.244.1.1 in 10.244.1.0/24): its source for traffic to remote pods.
func FirstAddress(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// PrefixStrings renders prefixes as strings, in order (for JSON and annotations).
func PrefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// Disjoint returns ps without prefixes that another one covers, sorted, so
// they can be elements of one interval set. Two prefixes either nest or do
// not overlap at all, so after sorting by address (wider first at the same
// address) one sweep with a stack of the open covering prefixes suffices:
// O(n log n), which matters for rules that admit thousands of pods.
func Disjoint(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		sorted = append(sorted, p.Masked())
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out, open []netip.Prefix
	for _, p := range sorted {
		for len(open) > 0 && !open[len(open)-1].Contains(p.Addr()) {
			open = open[:len(open)-1]
		}
		if len(open) > 0 && open[len(open)-1].Bits() <= p.Bits() {
			continue // covered (or a duplicate)
		}
		out = append(out, p)
		open = append(open, p)
	}
	return out
}

// DiffPrefixes returns what is in desired and not in actual (to add), and
// what is in actual and not in desired (to remove).
func DiffPrefixes(desired, actual []netip.Prefix) (add, del []netip.Prefix) {
	have := make(map[netip.Prefix]bool, len(actual))
	for _, p := range actual {
		have[p] = true
	}
	want := make(map[netip.Prefix]bool, len(desired))
	for _, p := range desired {
		want[p] = true
		if !have[p] {
			add = append(add, p)
		}
	}
	for _, p := range actual {
		if !want[p] {
			del = append(del, p)
		}
	}
	return add, del
}
