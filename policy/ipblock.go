package policy

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weftnet/weft/api"
)

func hostPrefixes(ips []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

// MaxIPBlockPrefixes bounds the set elements one ipBlock may become. A CIDR
// minus k exceptions takes up to k·(prefix length difference) prefixes:
// 2000 /128 holes in ::/0 would be about 230 000. A block over the bound
// is an error, so its rule admits nothing (fail closed: the pod stays
// isolated), and the work to find out is bounded by the same number.
const MaxIPBlockPrefixes = 16384

// MaxIPBlockExcepts bounds the exceptions read from one ipBlock.
const MaxIPBlockExcepts = 4096

// ipBlock turns a CIDR with exceptions into disjoint prefixes. The
// exceptions are sorted and merged once, then the CIDR is split only along
// the paths to them: O(k log k + k·bits), not a pass over the output per
// exception.
func ipBlock(b *networkingv1.IPBlock) ([]netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock %q: not a CIDR", b.CIDR)
	}
	cidr = cidr.Masked()
	if len(b.Except) > MaxIPBlockExcepts {
		return nil, fmt.Errorf("ipBlock %s: %d exceptions, over %d", cidr, len(b.Except), MaxIPBlockExcepts)
	}
	var ex []netip.Prefix
	for _, e := range b.Except {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock except %q: not a CIDR", e)
		}
		if p = p.Masked(); p.Addr().Is4() == cidr.Addr().Is4() && p.Overlaps(cidr) {
			ex = append(ex, p)
		}
	}
	budget := MaxIPBlockPrefixes
	out, ok := carve(nil, cidr, api.Disjoint(ex), &budget)
	if !ok {
		return nil, fmt.Errorf("ipBlock %s with %d exceptions needs over %d set elements; its rule admits nothing", cidr, len(b.Except), MaxIPBlockPrefixes)
	}
	return out, nil
}

// carve appends p without ex (sorted, disjoint, each overlapping p) to
// out, spending one unit of budget per prefix it appends or splits; it
// reports false when the budget runs out.
func carve(out []netip.Prefix, p netip.Prefix, ex []netip.Prefix, budget *int) ([]netip.Prefix, bool) {
	if *budget <= 0 {
		return out, false
	}
	*budget--
	switch {
	case len(ex) == 0:
		return append(out, p), true
	case ex[0].Bits() <= p.Bits():
		return out, true // an exception covers p
	}
	lo, hi := halves(p)
	// ex is sorted: the ones in lo come first.
	i, _ := slices.BinarySearchFunc(ex, hi.Addr(), func(e netip.Prefix, a netip.Addr) int { return e.Addr().Compare(a) })
	out, ok := carve(out, lo, ex[:i], budget)
	if !ok {
		return out, false
	}
	return carve(out, hi, ex[i:], budget)
}

func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	n := new(big.Int).SetBytes(p.Addr().AsSlice())
	n.SetBit(n, p.Addr().BitLen()-bits, 1)
	b := n.FillBytes(make([]byte, p.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(a, bits)
}
