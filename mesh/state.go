package mesh

import (
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// State is what the data plane of one node should look like: the addresses on
// the tunnel link, the WireGuard peers, and the routes through the tunnel.
type State struct {
	Addresses []netip.Prefix // single-address prefixes (/32, /128) the node owns
	Peers     []Peer
	Routes    []Route
}

// Peer is one remote node as WireGuard sees it.
type Peer struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix // the peer's pod CIDRs, and its node address (agent.Plan)
	Keepalive  time.Duration  // 0: off
	// Passive defers the keepalive of a newly created peer to the next
	// Apply. Turning a keepalive on makes wireguard-go send a handshake at
	// once; if both ends do that at the same instant, each consumes the
	// other's initiation, both end up responders, and the session waits
	// for WireGuard's 5 s retry. One end of each pair (the planner picks it)
	// waits, so the other's handshake is answered instead of crossed.
	Passive bool
}

// Route sends Dst into the tunnel with source address Src (invalid: kernel's choice).
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
}

// samePrefixes reports whether a and b hold the same prefixes in any order.
func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := sortedPrefixes(a), sortedPrefixes(b)
	return slices.Equal(as, bs)
}

func sortedPrefixes(p []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(p))
	for i, x := range p {
		out[i] = x.Masked()
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
