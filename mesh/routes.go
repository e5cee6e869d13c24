package mesh

import (
	"fmt"
	"net"
	"net/netip"
	"time"

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
	return diffRoutes(desired, have)
}

// diffRoutes is DiffRoutes against the routes there by destination.
func diffRoutes(desired []Route, have map[netip.Prefix]Route) (add, del []Route) {
	want := make(map[netip.Prefix]bool, len(desired))
	for _, r := range desired {
		want[r.Dst.Masked()] = true
		if a, ok := have[r.Dst.Masked()]; !ok || a.Src != r.Src || a.Via != r.Via || a.MTU != r.MTU {
			add = append(add, r)
		}
	}
	for dst, r := range have {
		if !want[dst] {
			del = append(del, r)
		}
	}
	return add, del
}

// routeRelist is how old Apply's knowledge of the routes may be before it
// reads them from the kernel again when nothing tells it of changes: under
// the agent's resync interval (30 s), so every resync pass reads them and
// puts back what someone else removed. With WatchRoutes running, the
// kernel's notifications say when to read them, and a listing every
// routeBackstop catches what they did not tell.
const (
	routeRelist   = 20 * time.Second
	routeBackstop = 5 * time.Minute
)

// routeCache is what Apply knows of weft's routes: read from the kernel at
// most every routeRelist (and after any failed write), and kept up to
// date with Apply's own writes in between. At 5000 peers a listing is
// 5000 routes to read and parse, a tenth of the agent's CPU while Nodes
// churn. It keeps what a diff and a deletion need, not the parsed
// routes (those hold on to the dump's buffers: 13 MB at 5000). Under
// Mesh.mu.
type routeCache struct {
	link    int       // the tunnel link's index when read
	at      time.Time // zero: read before the next diff
	watched bool      // WatchRoutes is running
	have    map[netip.Prefix]Route
	refs    map[netip.Prefix]routeRef
}

// routeRef is what deleting a route takes besides its destination: the
// kernel matches its scope, table and link (and weft's protocol).
type routeRef struct {
	link  int
	scope netlink.Scope
	table int
}

// deletion is the route to hand RouteDel for dst.
func (r routeRef) deletion(dst netip.Prefix) *netlink.Route {
	n := ipNets([]netip.Prefix{dst})[0]
	return &netlink.Route{LinkIndex: r.link, Dst: &n, Protocol: RouteProtocol, Scope: r.scope, Table: r.table}
}

// read returns the routes as known, reading them first if that is stale.
func (c *routeCache) read(link netlink.Link) (map[netip.Prefix]Route, map[netip.Prefix]routeRef, error) {
	relist := routeRelist
	if c.watched {
		relist = routeBackstop
	}
	if c.at.IsZero() || c.link != link.Attrs().Index || time.Since(c.at) >= relist {
		have, refs, err := listRoutes(link)
		if err != nil {
			c.stale()
			return nil, nil, err
		}
		c.have, c.refs, c.link, c.at = have, refs, link.Attrs().Index, time.Now()
	}
	return c.have, c.refs, nil
}

// wrote records a route Apply added or replaced; removed, one it deleted.
func (c *routeCache) wrote(r Route, kr *netlink.Route) {
	c.have[r.Dst.Masked()], c.refs[r.Dst.Masked()] = r, routeRef{kr.LinkIndex, kr.Scope, kr.Table}
}

func (c *routeCache) removed(dst netip.Prefix) {
	delete(c.have, dst.Masked())
	delete(c.refs, dst.Masked())
}

// stale makes the next read list the kernel's routes: after a write that
// failed, the cache no longer says what is there.
func (c *routeCache) stale() { c.at = time.Time{} }

// listRoutes returns the routes weft owns: those on the tunnel link and the
// direct ones (with a gateway) on any link, by destination, with what
// deleting each takes.
func listRoutes(link netlink.Link) (map[netip.Prefix]Route, map[netip.Prefix]routeRef, error) {
	have := map[netip.Prefix]Route{}
	refs := map[netip.Prefix]routeRef{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rs {
			if rt, ref, ok := fromKernel(r, link.Attrs().Index); ok {
				have[rt.Dst], refs[rt.Dst] = rt, ref
			}
		}
	}
	return have, refs, nil
}

// fromKernel is a kernel route as Apply knows it, when it is one of weft's:
// weft's protocol, on the tunnel link (index tunnel), or direct (with a
// gateway) on any.
func fromKernel(r netlink.Route, tunnel int) (Route, routeRef, bool) {
	if r.Dst == nil || r.Protocol != RouteProtocol {
		return Route{}, routeRef{}, false
	}
	via := gateway(r)
	if r.LinkIndex != tunnel && !via.IsValid() {
		return Route{}, routeRef{}, false
	}
	var src netip.Addr
	if r.Src != nil {
		src, _ = netip.AddrFromSlice(r.Src)
		src = src.Unmap()
	}
	return Route{Dst: prefixOf(*r.Dst), Src: src, Via: via, MTU: r.MTU}, routeRef{r.LinkIndex, r.Scope, r.Table}, true
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
