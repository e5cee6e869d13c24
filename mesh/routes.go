package mesh

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol tags the routes weft installs (shown as "proto 87" by ip
// route), so weft removes only routes it owns.
const RouteProtocol netlink.RouteProtocol = 87

// DiffRoutes returns the routes to add (or replace) and to delete so that the
// routes weft owns on the tunnel match desired.
func DiffRoutes(desired, actual []Route) (add, del []Route) {
	have := make(map[netip.Prefix]Route, len(actual))
	for _, r := range actual {
		have[r.Dst.Masked()] = r
	}
	want := make(map[netip.Prefix]bool, len(desired))
	for _, r := range desired {
		want[r.Dst.Masked()] = true
		if a, ok := have[r.Dst.Masked()]; !ok || a.Src != r.Src || a.Via != r.Via || a.MTU != r.MTU {
			add = append(add, r)
		}
	}
	for _, r := range actual {
		if !want[r.Dst.Masked()] {
			del = append(del, r)
		}
	}
	return add, del
}

// listRoutes returns the routes weft owns: those on the tunnel link and the
// direct ones (with a gateway) on any link, keyed to the kernel's own route
// for deletion.
func listRoutes(link netlink.Link) ([]Route, map[netip.Prefix]netlink.Route, error) {
	var out []Route
	raw := map[netip.Prefix]netlink.Route{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			via := gateway(r)
			if r.LinkIndex != link.Attrs().Index && !via.IsValid() {
				continue
			}
			var src netip.Addr
			if r.Src != nil {
				src, _ = netip.AddrFromSlice(r.Src)
				src = src.Unmap()
			}
			rt := Route{Dst: prefixOf(*r.Dst), Src: src, Via: via, MTU: r.MTU}
			out = append(out, rt)
			raw[rt.Dst] = r
		}
	}
	return out, raw, nil
}

// gateway is a route's next hop: its gateway of the same family, or an
// IPv4 one of an IPv6 route (RTA_VIA).
func gateway(r netlink.Route) netip.Addr {
	if r.Gw != nil {
		a, _ := netip.AddrFromSlice(r.Gw)
		return a.Unmap()
	}
	if v, ok := r.Via.(*netlink.Via); ok && v != nil {
		a, _ := netip.AddrFromSlice(v.Addr)
		return a.Unmap()
	}
	return netip.Addr{}
}

// netlinkRoute is r as the kernel takes it: into the tunnel link, or, for a
// direct route, to Via on the link that reaches it (an IPv6 range through
// an IPv4 node address goes as RTA_VIA).
func netlinkRoute(link netlink.Link, r Route) (*netlink.Route, error) {
	n := ipNets([]netip.Prefix{r.Dst})[0]
	nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &n, Protocol: RouteProtocol, Scope: netlink.SCOPE_LINK, MTU: r.MTU}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	if r.Via.IsValid() {
		rs, err := netlink.RouteGet(net.IP(r.Via.AsSlice()))
		if err != nil || len(rs) == 0 {
			return nil, fmt.Errorf("no route to the direct peer %s: %v", r.Via, err)
		}
		nr.LinkIndex, nr.Scope = rs[0].LinkIndex, netlink.SCOPE_UNIVERSE
		if r.Via.Is4() == r.Dst.Addr().Is4() {
			nr.Gw = net.IP(r.Via.AsSlice())
		} else {
			nr.Via = &netlink.Via{AddrFamily: netlink.FAMILY_V4, Addr: net.IP(r.Via.AsSlice())}
			if r.Via.Is6() {
				nr.Via = &netlink.Via{AddrFamily: netlink.FAMILY_V6, Addr: net.IP(r.Via.AsSlice())}
			}
		}
	}
	return nr, nil
}

// listAddresses returns the global addresses on the link (link-local ones are the kernel's).
func listAddresses(link netlink.Link) ([]netip.Prefix, error) {
	as, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out, nil
}

func netlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable as a source at once
	}
	return a
}
