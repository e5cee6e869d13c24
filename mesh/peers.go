package mesh

import (
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DiffPeers returns the changes that turn the device's actual peers into the
// desired ones: new and changed peers are written whole (their AllowedIPs
// replaced), peers no longer wanted are removed, and unchanged peers are not
// mentioned at all. An empty result means the device needs no write. New
// passive peers are created without keepalive; deferred counts them, and a
// later DiffPeers turns their keepalive on.
func DiffPeers(desired []Peer, actual []wgtypes.Peer) (cfgs []wgtypes.PeerConfig, deferred int) {
	have := make(map[wgtypes.Key]wgtypes.Peer, len(actual))
	for _, p := range actual {
		have[p.PublicKey] = p
	}
	want := make(map[wgtypes.Key]bool, len(desired))
	var out []wgtypes.PeerConfig
	for _, d := range desired {
		want[d.PublicKey] = true
		a, exists := have[d.PublicKey]
		if exists && peerMatches(d, a) {
			continue
		}
		ka := d.Keepalive
		if !exists && d.Passive && ka != 0 {
			ka = 0
			deferred++
		}
		out = append(out, wgtypes.PeerConfig{
			PublicKey:                   d.PublicKey,
			Endpoint:                    udpAddr(d.Endpoint),
			PersistentKeepaliveInterval: &ka,
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  ipNets(d.AllowedIPs),
		})
	}
	for _, a := range actual {
		if !want[a.PublicKey] {
			out = append(out, wgtypes.PeerConfig{PublicKey: a.PublicKey, Remove: true})
		}
	}
	return out, deferred
}

func peerMatches(d Peer, a wgtypes.Peer) bool {
	if d.Keepalive != a.PersistentKeepaliveInterval {
		return false
	}
	if addrPort(a.Endpoint) != d.Endpoint {
		return false
	}
	got := make([]netip.Prefix, 0, len(a.AllowedIPs))
	for _, n := range a.AllowedIPs {
		got = append(got, prefixOf(n))
	}
	return samePrefixes(d.AllowedIPs, got)
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr {
	if !ap.IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(ap)
}

func addrPort(u *net.UDPAddr) netip.AddrPort {
	if u == nil {
		return netip.AddrPort{}
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		out = append(out, net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		})
	}
	return out
}

func prefixOf(n net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	a = a.Unmap()
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones).Masked()
}
