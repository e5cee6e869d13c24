package mesh

import (
	"fmt"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Mesh applies a desired State to a running Device: peers through wgctrl on
// the UAPI socket, addresses and routes through netlink.
type Mesh struct {
	dev    *Device
	wg     *wgctrl.Client
	writes atomic.Uint64
}

// Changes counts what one Apply changed.
type Changes struct {
	PeersWritten, PeersRemoved       int
	PeersDeferred                    int // passive peers whose keepalive waits for the next Apply
	AddressesAdded, AddressesRemoved int
	RoutesAdded, RoutesRemoved       int
}

// Empty reports whether Apply changed nothing.
func (c Changes) Empty() bool { return c == Changes{} }

// New returns a Mesh for dev. wgctrl finds the device's UAPI socket in
// /var/run/wireguard (the agent's --run-dir must be that directory, or a
// bind mount of it, for wgctrl to see the device).
func New(dev *Device) (*Mesh, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open wgctrl: %w", err)
	}
	return &Mesh{dev: dev, wg: c}, nil
}

// Close releases the wgctrl client.
func (m *Mesh) Close() error { return m.wg.Close() }

// DeviceWrites counts configuration writes made to the WireGuard device.
func (m *Mesh) DeviceWrites() uint64 { return m.writes.Load() }

// Peers returns the device's view of its peers (handshakes, counters).
func (m *Mesh) Peers() ([]wgtypes.Peer, error) {
	d, err := m.wg.Device(m.dev.name)
	if err != nil {
		return nil, fmt.Errorf("read device %s: %w", m.dev.name, err)
	}
	return d.Peers, nil
}

// Apply changes the device, addresses and routes to match s, touching only
// what differs. Addresses go first so routes can use them as source.
func (m *Mesh) Apply(s State) (Changes, error) {
	var ch Changes
	link, err := netlink.LinkByIndex(m.dev.LinkIndex())
	if err != nil {
		return ch, fmt.Errorf("find tunnel link: %w", err)
	}

	haveAddrs, err := listAddresses(link)
	if err != nil {
		return ch, fmt.Errorf("list addresses: %w", err)
	}
	addA, delA := DiffAddresses(s.Addresses, haveAddrs)
	for _, p := range addA {
		if err := netlink.AddrReplace(link, netlinkAddr(p)); err != nil {
			return ch, fmt.Errorf("add address %s: %w", p, err)
		}
		ch.AddressesAdded++
	}

	peers, err := m.Peers()
	if err != nil {
		return ch, err
	}
	cfgs, deferred := DiffPeers(s.Peers, peers)
	ch.PeersDeferred = deferred
	if len(cfgs) > 0 {
		if err := m.wg.ConfigureDevice(m.dev.name, wgtypes.Config{Peers: cfgs}); err != nil {
			return ch, fmt.Errorf("configure peers: %w", err)
		}
		m.writes.Add(1)
		for _, c := range cfgs {
			if c.Remove {
				ch.PeersRemoved++
			} else {
				ch.PeersWritten++
			}
		}
	}

	haveRoutes, raw, err := listRoutes(link)
	if err != nil {
		return ch, fmt.Errorf("list routes: %w", err)
	}
	addR, delR := DiffRoutes(s.Routes, haveRoutes)
	for _, r := range delR {
		kr := raw[r.Dst]
		if err := netlink.RouteDel(&kr); err != nil {
			return ch, fmt.Errorf("delete route %s: %w", r.Dst, err)
		}
		ch.RoutesRemoved++
	}
	for _, r := range addR {
		kr, err := netlinkRoute(link, r)
		if err == nil && raw[r.Dst].LinkIndex != 0 && raw[r.Dst].LinkIndex != kr.LinkIndex {
			// Moving between the tunnel and the underlay: replace matches
			// by (dst, table), but say the old one goes first.
			old := raw[r.Dst]
			err = netlink.RouteDel(&old)
		}
		if err == nil {
			err = netlink.RouteReplace(kr)
		}
		if err != nil {
			return ch, fmt.Errorf("add route %s: %w", r.Dst, err)
		}
		ch.RoutesAdded++
	}

	for _, p := range delA {
		if err := netlink.AddrDel(link, netlinkAddr(p)); err != nil {
			return ch, fmt.Errorf("remove address %s: %w", p, err)
		}
		ch.AddressesRemoved++
	}
	return ch, nil
}
