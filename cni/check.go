package cni

import (
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/cni/ipam"
)

// Check verifies that the attachment is still as ADD left it.
func Check(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkArgs(args, true); err != nil {
		return err
	}
	if conf.RawPrevResult == nil {
		return cniErr(types.ErrInvalidNetworkConfig, "CHECK needs prevResult")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	hostName := HostVethName(args.ContainerID, args.IfName)
	hostLink, err := netlink.LinkByName(hostName)
	if err != nil {
		return cniErr(types.ErrInternal, "host veth %s is missing", hostName)
	}
	store, err := ipam.Open(conf.storeDir())
	if err != nil {
		return ioErr("ipam", err)
	}
	defer store.Close()
	held, err := store.List()
	if err != nil {
		return ioErr("ipam", err)
	}
	var want []netip.Addr
	for _, c := range prev.IPs {
		a, _ := netip.AddrFromSlice(c.Address.IP)
		a = a.Unmap()
		want = append(want, a)
		if held[a] != (ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}) {
			return cniErr(types.ErrInternal, "address %s is not reserved for this attachment", a)
		}
		if !hasRoute(hostLink, a) {
			return cniErr(types.ErrInternal, "host route to %s via %s is missing", a, hostName)
		}
	}
	netns, err := openNetns(args.Netns)
	if err != nil {
		return err
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return cniErr(types.ErrInternal, "interface %s is missing in the sandbox", args.IfName)
		}
		have, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
		for _, a := range want {
			found := false
			for _, h := range have {
				if h.IP.Equal(a.AsSlice()) {
					found = true
				}
			}
			if !found {
				return cniErr(types.ErrInternal, "address %s is missing on %s", a, args.IfName)
			}
			routes, _ := netlink.RouteList(link, family(a))
			if !hasDefault(routes) {
				return cniErr(types.ErrInternal, "default route for %s is missing in the sandbox", a)
			}
		}
		return nil
	})
}

func hasRoute(link netlink.Link, a netip.Addr) bool {
	routes, _ := netlink.RouteList(link, family(a))
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.Equal(a.AsSlice()) {
			return true
		}
	}
	return false
}

func hasDefault(routes []netlink.Route) bool {
	for _, r := range routes {
		isDefault := r.Dst == nil
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			isDefault = ones == 0
		}
		if isDefault && r.Gw != nil {
			return true
		}
	}
	return false
}
