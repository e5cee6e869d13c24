package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Overhead is what WireGuard adds to each packet over an IPv6 underlay
// (40 IP + 8 UDP + 32 WireGuard); using it for IPv4 too keeps one MTU safe for both.
const Overhead = 80

// Underlay describes the interface that holds the node's underlay address.
type Underlay struct {
	MTU      int
	Prefixes []netip.Prefix // the networks of that interface's addresses (no link-local)
}

// UnderlayOf returns the MTU and networks of the interface that holds addr.
func UnderlayOf(addr netip.Addr) (Underlay, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return Underlay{}, err
	}
	for _, l := range links {
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		u, found := Underlay{MTU: l.Attrs().MTU}, false
		for _, a := range as {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			found = found || ip == addr
			if ones, _ := a.Mask.Size(); !ip.IsLinkLocalUnicast() {
				u.Prefixes = append(u.Prefixes, netip.PrefixFrom(ip, ones).Masked())
			}
		}
		if found {
			return u, nil
		}
	}
	return Underlay{}, fmt.Errorf("no interface holds address %s", addr)
}

// DefaultRouteSource returns the address the kernel would use as source on
// the IPv4 default route (or, failing that, the IPv6 one).
func DefaultRouteSource() (netip.Addr, error) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, r := range rs {
			if r.Dst != nil && !isDefault(r) {
				continue
			}
			if r.Src != nil {
				a, _ := netip.AddrFromSlice(r.Src)
				return a.Unmap(), nil
			}
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			as, _ := netlink.AddrList(l, fam)
			for _, a := range as {
				ip, _ := netip.AddrFromSlice(a.IP)
				if ip = ip.Unmap(); ip.IsGlobalUnicast() {
					return ip, nil
				}
			}
		}
	}
	return netip.Addr{}, errors.New("no default route to take an address from: give --advertise-address")
}

func isDefault(r netlink.Route) bool {
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// PathMTU is the kernel's path MTU to addr when it has learned one smaller
// than the route's (from an ICMP "fragmentation needed" or "packet too
// big"); ok is false when it knows none.
func PathMTU(addr netip.Addr) (mtu int, ok bool) {
	rs, err := netlink.RouteGet(net.IP(addr.AsSlice()))
	if err != nil || len(rs) == 0 || rs[0].MTU == 0 {
		return 0, false
	}
	return rs[0].MTU, true
}
