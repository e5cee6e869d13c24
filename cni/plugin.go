package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni/ipam"
)

// RouteProtocol tags the host routes to pods (shown as "proto 88").
const RouteProtocol netlink.RouteProtocol = 88

func cniErr(code uint, format string, args ...any) *types.Error {
	return types.NewError(code, "weft-cni: "+fmt.Sprintf(format, args...), "")
}

// ioErr maps a storage failure to a CNI error: a full disk or a busy
// resource may pass, so the runtime should try again later.
func ioErr(what string, err error) *types.Error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, ipam.ErrExhausted) {
		return cniErr(types.ErrTryAgainLater, "%s: %v", what, err)
	}
	return cniErr(types.ErrInternal, "%s: %v", what, err)
}

func checkArgs(args *skel.CmdArgs, needNetns bool) error {
	if args.ContainerID == "" || len(args.ContainerID) > 256 || !containerIDRE.MatchString(args.ContainerID) {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID %q: want letters, digits, '_', '.' or '-'", args.ContainerID)
	}
	if args.IfName == "" || len(args.IfName) > 15 || strings.ContainsAny(args.IfName, "/: \t\n") || args.IfName == "." || args.IfName == ".." {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME %q: want an interface name of 1-15 bytes", args.IfName)
	}
	if needNetns && args.Netns == "" {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is empty")
	}
	return nil
}

func openNetns(path string) (ns.NetNS, error) {
	n, err := ns.GetNS(path)
	if err != nil {
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &notNS) {
			return nil, cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %s is not a network namespace", path)
		}
		return nil, cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %s: %v", path, err)
	}
	return n, nil
}

// lockedStore opens the network's reservations and takes their lock; done
// releases both.
func lockedStore(conf *NetConf) (*ipam.Store, func(), error) {
	store, err := ipam.Open(conf.storeDir())
	if err != nil {
		return nil, nil, ioErr("ipam", err)
	}
	if err := store.Lock(); err != nil {
		store.Close()
		return nil, nil, ioErr("ipam lock", err)
	}
	return store, func() { store.Unlock(); store.Close() }, nil
}

// Add attaches the sandbox. On any failure it undoes what it did.
func Add(args *skel.CmdArgs) (err error) {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkArgs(args, true); err != nil {
		return err
	}
	netns, err := openNetns(args.Netns)
	if err != nil {
		return err
	}
	defer netns.Close()
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return cniErr(types.ErrInternal, "current netns: %v", err)
	}
	defer hostNS.Close()
	// A second ADD for a live attachment must change nothing: not its veth,
	// not its reservation (the runtime answers a failed ADD with DEL).
	if err := netns.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName(args.IfName); err == nil {
			return cniErr(types.ErrInvalidEnvironmentVariables, "interface %s already exists in %s", args.IfName, args.Netns)
		}
		return nil
	}); err != nil {
		return err
	}

	store, err := ipam.Open(conf.storeDir())
	if err != nil {
		return ioErr("ipam", err)
	}
	defer store.Close()
	if err := store.Lock(); err != nil {
		return ioErr("ipam lock", err)
	}
	who := ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
	addrs, err := store.ReserveAll(conf.Pools(), who)
	store.Unlock()
	if err != nil {
		return ioErr("reserve address", err)
	}
	hostName := HostVethName(args.ContainerID, args.IfName)
	defer func() {
		if err != nil {
			deleteLink(hostName)
			// Undo the reservation; a failure leaves it to GC, which
			// frees what no runtime attachment holds.
			if store.Lock() == nil {
				_, _ = store.Release(who)
				store.Unlock()
			}
		}
	}()
	deleteLink(hostName) // left by an ADD of this attachment killed half-way

	var hostIf, contIf net.Interface
	err = netns.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName(args.IfName); err == nil {
			return cniErr(types.ErrInvalidEnvironmentVariables, "interface %s already exists in %s", args.IfName, args.Netns)
		}
		var err error
		hostIf, contIf, err = ip.SetupVethWithName(args.IfName, hostName, conf.MTU, "", hostNS)
		if err != nil {
			return err
		}
		return configureSandbox(args.IfName, hostIf.HardwareAddr, addrs)
	})
	if err != nil {
		var ce *types.Error
		if errors.As(err, &ce) {
			return ce
		}
		return cniErr(types.ErrInternal, "set up %s in %s: %v", args.IfName, args.Netns, err)
	}
	if err := routeToPod(hostName, contIf.HardwareAddr, addrs); err != nil {
		return cniErr(types.ErrInternal, "host route: %v", err)
	}
	if err := registerAttachment(conf, args, addrs); err != nil {
		return err
	}

	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
			{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Sandbox: args.Netns},
		},
	}
	for _, a := range addrs {
		gw := GatewayV4
		if a.Is6() {
			gw = GatewayV6
		}
		result.IPs = append(result.IPs, &current.IPConfig{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())},
			Gateway:   gw.AsSlice(),
		})
		result.Routes = append(result.Routes, &types.Route{Dst: defaultNet(a), GW: gw.AsSlice()})
	}
	return types.PrintResult(result, conf.CNIVersion)
}

func defaultNet(a netip.Addr) net.IPNet {
	if a.Is4() {
		return net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// configureSandbox runs inside the pod's namespace: the pod's addresses as
// /32 and /128, an on-link gateway per family pinned to the host veth's MAC,
// and default routes through it.
func configureSandbox(ifname string, hostMAC net.HardwareAddr, addrs []netip.Addr) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", ifname, err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		gw := GatewayV4
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
			gw = GatewayV6
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %s: %w", a, err)
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: gw.AsSlice(), HardwareAddr: hostMAC, Family: family(gw)}); err != nil {
			return fmt.Errorf("gateway neighbour %s: %w", gw, err)
		}
		if a.Is4() {
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK,
				Dst: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				return fmt.Errorf("route to gateway: %w", err)
			}
		}
		dst := defaultNet(a)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &dst, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// routeToPod routes each pod address over its host veth, with a permanent
// neighbour entry for the pod's MAC: like the pod's pinned gateway, this
// needs no ARP or NDP, so the first packet is not lost while the host veth's
// link-local address is still in duplicate address detection.
func routeToPod(hostName string, podMAC net.HardwareAddr, addrs []netip.Addr) error {
	link, err := netlink.LinkByName(hostName)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: podMAC, Family: family(a)}); err != nil {
			return fmt.Errorf("neighbour %s on %s: %w", a, hostName, err)
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol,
			Dst: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("%s via %s: %w", a, hostName, err)
		}
	}
	return nil
}

// deleteLink removes a link if there is one: cleanup, whose failure the
// next ADD, DEL or GC of the attachment meets again.
func deleteLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

// Main runs the plugin as a CNI binary.
func Main(about string) {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: Add, Del: Del, Check: Check, GC: GC, Status: Status},
		supportedVersions, about)
}
