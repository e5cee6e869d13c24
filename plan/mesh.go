// Package plan computes the whole desired state of one node's data plane
// from what the sources said: the WireGuard peers, tunnel addresses and
// routes (Plan), the egress NAT (EgressNAT), the CNI conflist (ConfList)
// and NetworkPolicy's nftables state from a snapshot of the cluster
// (Policy). It is pure: no I/O, no client, socket, netlink or nftables
// library (a test enforces it); the appliers (mesh, nft, agent) diff what
// it returns against what is there.
package plan

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// Mesh is what the data plane of one node should look like: the addresses on
// the tunnel link, the WireGuard peers, and the routes through the tunnel.
type Mesh struct {
	Addresses []netip.Prefix // single-address prefixes (/32, /128) the node owns
	Peers     []Peer
	Routes    []Route
}

// Peer is one remote node as WireGuard sees it.
type Peer struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix // the peer's pod CIDRs, and its node address (Plan)
	Keepalive  time.Duration  // 0: off
	// Passive creates the peer without keepalive: until its first
	// handshake when it may Rest (mesh.DormantAfter), else until the next
	// Apply. Turning a keepalive on makes wireguard-go send a handshake at
	// once; if both ends do that at the same instant, each consumes the
	// other's initiation, both end up responders, and the session waits
	// for WireGuard's 5 s retry. One end of each pair (the planner picks it)
	// waits, so the other's handshake is answered instead of crossed.
	Passive bool
	// Roaming keeps an endpoint WireGuard learned from the peer's
	// handshakes (the peer is behind NAT) instead of writing Endpoint over it.
	Roaming bool
	// PresharedKey is the pair's post-quantum key (zero: none), from
	// Options.Keys.
	PresharedKey wgtypes.Key
	// External: a Peer object, not a node; it has no agent to agree a
	// preshared key with.
	External bool
	// Rest lets the mesh turn the keepalive off while the peer does not
	// answer (mesh.DormantAfter). Not on a node behind NAT: it must keep
	// its mappings open and be the one that starts handshakes.
	Rest bool
	// Live: the peer's agent answers gossip (Options.Live), so its
	// keepalive does not fall asleep for want of answers (a new passive
	// peer still starts resting until the other end's first handshake).
	Live bool
}

// Route sends Dst into the tunnel with source address Src (invalid:
// kernel's choice), or, when Via is set, over the underlay to the node
// address Via (a direct path). MTU, when not 0, is smaller than the link's:
// what the path to that peer carries (mesh.PathMTU).
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
	Via netip.Addr
	MTU int
}

// Keepalive is the persistent keepalive of every peer. Besides keeping NAT
// mappings open, turning it on makes a freshly configured peer send a
// handshake at once, so a restarted agent re-establishes sessions without
// waiting for traffic to time out.
const Keepalive = 25 * time.Second

// Plan turns this node and its accepted peers into the data plane it wants:
// the node's own first address in each pod CIDR on the tunnel, one WireGuard
// peer per node whose AllowedIPs are that node's pod CIDRs and its own
// address (see nodeAddresses), and a route per remote pod CIDR with the node's
// own address of that family as source, so node-to-remote-pod traffic passes
// the peer's cryptokey routing. Node addresses are allowed, never routed.
// A peer on a direct path (peer.Path) has no WireGuard peer: its pod CIDRs
// are routed over the underlay to its endpoint address. pathMTU (by peer
// name, may be nil) lowers the MTU of a peer's tunnel routes to what its
// path carries.
// External peers (Peer objects, accepted by peer.AcceptExternals) become
// WireGuard peers with exactly their allowed IPs, routed into the tunnel.
func Plan(self peer.NodeInfo, peers []peer.NodeInfo, opts Options) Mesh {
	pathMTU := opts.PathMTU
	// Sized once: at thousands of peers, growing them by append copied
	// each several times over (a pass's largest allocation at 5000).
	routes := 0
	for _, n := range peers {
		routes += len(n.PodCIDRs)
	}
	for _, e := range opts.Externals {
		routes += len(e.AllowedIPs)
	}
	s := Mesh{Peers: make([]Peer, 0, len(peers)+len(opts.Externals)), Routes: make([]Route, 0, routes)}
	src := map[bool]netip.Addr{}
	for _, p := range self.PodCIDRs {
		a := api.FirstAddress(p)
		src[a.Is4()] = a
		s.Addresses = append(s.Addresses, netip.PrefixFrom(a, a.BitLen()))
	}
	own := nodeAddresses(self, peers)
	for _, n := range peers {
		direct, tunnel := splitDirect(self, n)
		if opts.NoDirect[n.Name] {
			direct, tunnel = nil, n.PodCIDRs
		}
		for _, p := range direct {
			s.Routes = append(s.Routes, Route{Dst: p, Src: src[p.Addr().Is4()], Via: directVia(n, p)})
		}
		if len(tunnel) == 0 {
			continue
		}
		n.PodCIDRs = tunnel
		allowed := n.PodCIDRs
		if a, ok := own[n.Name]; ok {
			allowed = append(slices.Clip(n.PodCIDRs), netip.PrefixFrom(a, a.BitLen()))
		}
		s.Peers = append(s.Peers, Peer{
			Name:       n.Name,
			PublicKey:  n.PublicKey,
			Endpoint:   n.Endpoint,
			AllowedIPs: allowed,
			Keepalive:  Keepalive,
			// The end with the greater key waits for the other's handshake.
			Passive: bytes.Compare(self.PublicKey[:], n.PublicKey[:]) > 0,
			Roaming: n.BehindNAT,
			Rest:    !self.BehindNAT,
			Live:    opts.Live[n.Name],
		})
		for _, p := range n.PodCIDRs {
			mtu := pathMTU[n.Name]
			if mtu > 0 && p.Addr().Is6() && mtu < minIPv6MTU {
				// IPv6 links carry 1280; below that the outer packets
				// are fragmented (mesh's bind sends them unsegmented).
				mtu = minIPv6MTU
			}
			s.Routes = append(s.Routes, Route{Dst: p, Src: src[p.Addr().Is4()], MTU: mtu})
		}
	}
	for _, e := range opts.Externals {
		s.Peers = append(s.Peers, Peer{
			Name: ExternalName(e.Name), PublicKey: e.PublicKey, Endpoint: e.Endpoint,
			AllowedIPs: e.AllowedIPs, Keepalive: e.Keepalive, External: true,
		})
		for _, p := range e.AllowedIPs {
			s.Routes = append(s.Routes, Route{Dst: p, Src: src[p.Addr().Is4()]})
		}
	}
	return s
}

// Keys is a snapshot of the pairs' post-quantum preshared keys (the agent's
// key manager agrees them), by peer public key. The loop fills a Plan's
// peers from it (Fill) before each Apply, and fills one peer from a newer
// snapshot when a key is agreed between two Applies: the device never
// holds a key the plan did not give it.
type Keys struct {
	PSK map[wgtypes.Key]wgtypes.Key
	// Require keeps a node peer without a key off the device (--pq=required):
	// its routes stay in the tunnel, where WireGuard drops what no peer takes.
	Require bool
}

// Fill returns ps with each node peer's preshared key set from k, and
// without the node peers that have none when keys are required. External
// peers (Peer objects) have no agent to agree a key with and keep none.
// ps is not changed. Without keys (nil) it returns ps.
func (k *Keys) Fill(ps []Peer) []Peer {
	if k == nil {
		return ps
	}
	out := make([]Peer, 0, len(ps))
	for _, p := range ps {
		if !p.External {
			psk, ok := k.PSK[p.PublicKey]
			if !ok && k.Require {
				continue
			}
			p.PresharedKey = psk
		}
		out = append(out, p)
	}
	return out
}

const minIPv6MTU = 1280

// Options are Plan's inputs besides the nodes.
type Options struct {
	PathMTU   map[string]int // by peer name: the tunnel MTU its path allows, when learned smaller
	Externals []peer.External
	// NoDirect names the peers whose direct routes could not be written
	// (mesh.DirectPathError): they go through the tunnel instead.
	NoDirect map[string]bool
	// Live names the peers whose agents answer gossip (Peer.Live). Their
	// keepalive does not fall asleep: resting is for a Node with nothing
	// behind it, while an
	// agent that answers gossip but not WireGuard (a blocked port, a
	// partition of the transport) is a fault that must stay visible (its
	// handshake ages, WeftPeerHandshakeStale) and must heal by itself once
	// the path is back, without waiting for pod traffic.
	Live map[string]bool
}

// ExternalName is the name a Peer object's WireGuard peer goes by in a Plan,
// so it cannot be mistaken for a node of the same name.
func ExternalName(name string) string { return "peer/" + name }

// splitDirect divides a peer's pod CIDRs into those routed over the
// underlay (the path is direct and the peer has an underlay address of the
// range's family: Linux routes IPv6 only through an IPv6 next hop) and
// those left to the tunnel.
func splitDirect(self, n peer.NodeInfo) (direct, tunnel []netip.Prefix) {
	if peer.Path(self, n) != peer.PathDirect {
		return nil, n.PodCIDRs
	}
	for _, p := range n.PodCIDRs {
		if directVia(n, p).IsValid() {
			direct = append(direct, p)
		} else {
			tunnel = append(tunnel, p)
		}
	}
	return direct, tunnel
}

// directVia is n's underlay address of p's family: its endpoint's, or one
// of its Node's (or announced) addresses.
func directVia(n peer.NodeInfo, p netip.Prefix) netip.Addr {
	if a := n.Endpoint.Addr(); n.Endpoint.IsValid() && a.Is4() == p.Addr().Is4() {
		return a
	}
	for _, a := range n.NodeAddrs {
		if a.Is4() == p.Addr().Is4() && (a.IsGlobalUnicast() || a.IsPrivate()) {
			return a
		}
	}
	return netip.Addr{}
}

// nodeAddresses picks, per peer, the node address its tunnel may carry as a
// source: a pod's packet to another node's own address (the API server, a
// hostNetwork pod) leaves on the underlay, and that node's reply comes back
// through the tunnel from its node address, which WireGuard drops unless the
// peer is allowed it. The address is the peer's endpoint address, and only
// where no other peer announces the same one, it is not this node's, and it
// is inside no pod range: a node cannot make the tunnel accept another
// node's address, or a pod's, from itself.
func nodeAddresses(self peer.NodeInfo, peers []peer.NodeInfo) map[string]netip.Addr {
	count := make(map[netip.Addr]int, len(peers)+1)
	pods := make([]netip.Prefix, 0, 2*(len(peers)+1))
	pods = append(pods, self.PodCIDRs...)
	for _, n := range peers {
		pods = append(pods, n.PodCIDRs...)
		if n.Endpoint.IsValid() {
			count[n.Endpoint.Addr().Unmap()]++
		}
	}
	if self.Endpoint.IsValid() {
		count[self.Endpoint.Addr().Unmap()]++ // a peer announcing this node's address counts 2
	}
	inPods := newRanges(pods)
	own := make(map[string]netip.Addr, len(peers))
	for _, n := range peers {
		a := n.Endpoint.Addr().Unmap()
		if !n.Endpoint.IsValid() || count[a] != 1 || inPods.contains(a) {
			continue
		}
		own[n.Name] = a
	}
	return own
}

// ranges is a set of prefixes as sorted, merged address ranges: contains
// is a binary search, so nodeAddresses is not quadratic in the number of
// peers (it was most of a plan's time at 1000).
type ranges []struct{ first, last netip.Addr }

func newRanges(ps []netip.Prefix) ranges {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Masked().Addr().Compare(b.Masked().Addr()) })
	out := make(ranges, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		first, last := p.Addr(), lastAddr(p)
		if n := len(out); n > 0 && out[n-1].first.Is4() == first.Is4() && first.Compare(out[n-1].last) <= 0 {
			if last.Compare(out[n-1].last) > 0 {
				out[n-1].last = last
			}
			continue
		}
		out = append(out, struct{ first, last netip.Addr }{first, last})
	}
	return out
}

func (r ranges) contains(a netip.Addr) bool {
	i, _ := slices.BinarySearchFunc(r, a, func(e struct{ first, last netip.Addr }, a netip.Addr) int {
		return e.first.Compare(a)
	})
	// r[i].first >= a; the range holding a starts at a (i) or before (i-1).
	if i < len(r) && r[i].first == a {
		return true
	}
	return i > 0 && r[i-1].first.Is4() == a.Is4() && a.Compare(r[i-1].last) <= 0
}

// lastAddr is the last address of p (masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
