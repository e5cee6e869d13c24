package mesh

import (
	"net"
	"net/netip"
	"time"

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
		keep := exists && d.Roaming && learnedEndpoint(d, a, time.Now())
		if exists && peerMatches(d, a, keep) {
			continue
		}
		ka := d.Keepalive
		if !exists && d.Passive && ka != 0 {
			ka = 0
			deferred++
		}
		ep := udpAddr(d.Endpoint)
		if keep {
			ep = nil // leave the endpoint the device learned
		}
		out = append(out, peerConfig(d, ep, ka))
	}
	for _, a := range actual {
		if !want[a.PublicKey] {
			out = append(out, wgtypes.PeerConfig{PublicKey: a.PublicKey, Remove: true})
		}
	}
	return out, deferred
}

// peerConfig writes d whole, with endpoint ep (nil: leave the device's) and keepalive ka.
func peerConfig(d Peer, ep *net.UDPAddr, ka time.Duration) wgtypes.PeerConfig {
	psk := d.PresharedKey
	return wgtypes.PeerConfig{
		PublicKey:                   d.PublicKey,
		Endpoint:                    ep,
		PresharedKey:                &psk,
		PersistentKeepaliveInterval: &ka,
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  ipNets(d.AllowedIPs),
	}
}

// rejectAfter is WireGuard's Reject-After-Time: a session whose last
// handshake is older has ended.
const rejectAfter = 180 * time.Second

// learnedEndpoint reports whether the device holds an endpoint for the peer
// other than the claimed one and a live session through it: WireGuard took
// it from the peer's authenticated packets (a node behind NAT, whose
// announced address is not where its packets come from). For a peer that
// says it is behind NAT (Roaming), a static endpoint from a Node object or
// gossip must not overwrite it; once the session lapses, the claimed
// endpoint is written again. Any other peer gets its announced endpoint
// back at every reconcile: whoever holds a copy of its key cannot keep its
// traffic.
func learnedEndpoint(d Peer, a wgtypes.Peer, now time.Time) bool {
	return a.Endpoint != nil && addrPort(a.Endpoint) != d.Endpoint &&
		!a.LastHandshakeTime.IsZero() && now.Sub(a.LastHandshakeTime) < rejectAfter
}

func peerMatches(d Peer, a wgtypes.Peer, learned bool) bool {
	if d.Keepalive != a.PersistentKeepaliveInterval || d.PresharedKey != a.PresharedKey {
		return false
	}
	if !learned && addrPort(a.Endpoint) != d.Endpoint {
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
