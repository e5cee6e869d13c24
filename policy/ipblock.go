package policy

import (
	"fmt"
	"math/big"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
)

func hostPrefixes(ips []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

// ipBlock turns a CIDR with exceptions into disjoint prefixes.
func ipBlock(b *networkingv1.IPBlock) ([]netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock %q: not a CIDR", b.CIDR)
	}
	out := []netip.Prefix{cidr.Masked()}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock except %q: not a CIDR", e)
		}
		var next []netip.Prefix
		for _, p := range out {
			next = append(next, subtract(p, ex.Masked())...)
		}
		out = next
	}
	return out, nil
}

// subtract returns p without q as disjoint prefixes (at most one per bit of
// difference in length).
func subtract(p, q netip.Prefix) []netip.Prefix {
	if !p.Overlaps(q) {
		return []netip.Prefix{p}
	}
	if q.Bits() <= p.Bits() {
		return nil // q covers p
	}
	// Split p into halves until the half holding q is q itself.
	var out []netip.Prefix
	cur := p
	for cur.Bits() < q.Bits() {
		lo, hi := halves(cur)
		if lo.Contains(q.Addr()) {
			out = append(out, hi)
			cur = lo
		} else {
			out = append(out, lo)
			cur = hi
		}
	}
	return out
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
