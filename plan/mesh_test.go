package plan

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
)

func TestPlan(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24", "fd00:10:244:1::/64")
	cases := []struct {
		name   string
		self   peer.NodeInfo
		peers  []peer.NodeInfo
		addrs  string
		routes string
	}{
		{"alone", self, nil, "[10.244.1.1/32 fd00:10:244:1::1/128]", "[]"},
		{"dual-stack peers", self, []peer.NodeInfo{node("a", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64"), node("b", pubKey(t), "10.244.3.0/24")},
			"[10.244.1.1/32 fd00:10:244:1::1/128]",
			"[10.244.2.0/24<-10.244.1.1 fd00:10:244:2::/64<-fd00:10:244:1::1 10.244.3.0/24<-10.244.1.1]"},
		{"v4-only node, v6 peer range has no source", node("n", pubKey(t), "10.244.1.0/24"), []peer.NodeInfo{node("a", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64")},
			"[10.244.1.1/32]", "[10.244.2.0/24<-10.244.1.1 fd00:10:244:2::/64<-invalid IP]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Plan(tc.self, tc.peers, Options{})
			if got := fmt.Sprint(s.Addresses); got != tc.addrs {
				t.Errorf("addresses %s, want %s", got, tc.addrs)
			}
			var rs []string
			for _, r := range s.Routes {
				rs = append(rs, r.Dst.String()+"<-"+r.Src.String())
			}
			if got := fmt.Sprint(rs); got != tc.routes && !(len(rs) == 0 && tc.routes == "[]") {
				t.Errorf("routes %s, want %s", got, tc.routes)
			}
			if len(s.Peers) != len(tc.peers) {
				t.Fatalf("%d peers, want %d", len(s.Peers), len(tc.peers))
			}
			for i, p := range s.Peers {
				if fmt.Sprint(p.AllowedIPs) != fmt.Sprint(tc.peers[i].PodCIDRs) {
					t.Errorf("peer %s AllowedIPs %v, want exactly its pod CIDRs %v", p.Name, p.AllowedIPs, tc.peers[i].PodCIDRs)
				}
				if p.Keepalive != Keepalive {
					t.Errorf("peer %s keepalive %v", p.Name, p.Keepalive)
				}
			}
		})
	}
}

// TestPlanAllowsEachPeersOwnAddress: a peer's tunnel may carry its node
// address as a source (a node's reply to a pod that reached it over the
// underlay), unless another peer or this node announces the same address or
// it lies in a pod range.
func TestPlanAllowsEachPeersOwnAddress(t *testing.T) {
	withEndpoint := func(n peer.NodeInfo, ep string) peer.NodeInfo {
		n.Endpoint = netip.MustParseAddrPort(ep)
		if n.Endpoint.Addr().IsUnspecified() {
			n.Endpoint = netip.AddrPort{}
		}
		return n
	}
	self := withEndpoint(node("self", pubKey(t), "10.244.1.0/24"), "10.99.0.11:51820")
	peers := []peer.NodeInfo{
		withEndpoint(node("a", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64"), "10.99.0.12:51820"),
		withEndpoint(node("b", pubKey(t), "10.244.3.0/24"), "10.99.0.13:51820"),
		withEndpoint(node("c", pubKey(t), "10.244.4.0/24"), "10.99.0.13:51820"),   // claims b's address
		withEndpoint(node("d", pubKey(t), "10.244.5.0/24"), "10.99.0.11:51820"),   // claims this node's
		withEndpoint(node("e", pubKey(t), "10.244.6.0/24"), "10.244.2.7:51820"),   // a pod's address
		withEndpoint(node("f", pubKey(t), "10.244.7.0/24"), "[fd00:99::7]:51820"), // IPv6 underlay
		withEndpoint(node("g", pubKey(t), "10.244.8.0/24"), "0.0.0.0:0"),          // no endpoint yet
	}
	want := map[string]string{
		"a": "[10.244.2.0/24 fd00:10:244:2::/64 10.99.0.12/32]",
		"b": "[10.244.3.0/24]", "c": "[10.244.4.0/24]", "d": "[10.244.5.0/24]", "e": "[10.244.6.0/24]",
		"f": "[10.244.7.0/24 fd00:99::7/128]",
		"g": "[10.244.8.0/24]",
	}
	s := Plan(self, peers, Options{})
	for i, p := range s.Peers {
		if got := fmt.Sprint(p.AllowedIPs); got != want[p.Name] {
			t.Errorf("peer %s AllowedIPs %s, want %s", p.Name, got, want[p.Name])
		}
		if fmt.Sprint(peers[i].PodCIDRs) != fmt.Sprint(p.AllowedIPs[:len(peers[i].PodCIDRs)]) {
			t.Errorf("peer %s's own pod CIDRs changed: %v", p.Name, peers[i].PodCIDRs)
		}
	}
	for _, r := range s.Routes {
		if r.Dst.Bits() == r.Dst.Addr().BitLen() {
			t.Errorf("a node address is routed into the tunnel: %v", r.Dst)
		}
	}
}

// TestPlanDirectPeers: a peer of the same location, both ends direct, gets
// no WireGuard peer and routes over the underlay to its node address; every
// other peer stays in the tunnel, with its path MTU when one was learned.
func TestPlanDirectPeers(t *testing.T) {
	at := func(n peer.NodeInfo, loc string, direct bool, ep string) peer.NodeInfo {
		n.Location, n.Direct, n.Endpoint = loc, direct, netip.MustParseAddrPort(ep)
		return n
	}
	self := at(node("self", pubKey(t), "10.244.1.0/24", "fd00:10:244:1::/64"), "a", true, "10.99.0.11:51820")
	peers := []peer.NodeInfo{
		at(node("same", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64"), "a", true, "10.99.0.12:51820"),
		at(node("encrypts", pubKey(t), "10.244.3.0/24"), "a", false, "10.99.0.13:51820"),
		at(node("elsewhere", pubKey(t), "10.244.4.0/24"), "b", true, "10.99.0.14:51820"),
	}
	s := Plan(self, peers, Options{PathMTU: map[string]int{"elsewhere": 1200, "same": 1000}})
	var names []string
	for _, p := range s.Peers {
		names = append(names, p.Name)
	}
	if fmt.Sprint(names) != "[same encrypts elsewhere]" || fmt.Sprint(s.Peers[0].AllowedIPs) != "[fd00:10:244:2::/64 10.99.0.12/32]" {
		t.Errorf("WireGuard peers %v (%v), want [same encrypts elsewhere], same carrying only its IPv6 range: it has no IPv6 underlay address", names, s.Peers)
	}
	var rs []string
	for _, r := range s.Routes {
		rs = append(rs, fmt.Sprintf("%s via %s mtu %d", r.Dst, r.Via, r.MTU))
	}
	want := "[10.244.2.0/24 via 10.99.0.12 mtu 0 fd00:10:244:2::/64 via invalid IP mtu 1280 10.244.3.0/24 via invalid IP mtu 0 10.244.4.0/24 via invalid IP mtu 1200]"
	if fmt.Sprint(rs) != want {
		t.Errorf("routes %v,\nwant %s", rs, want)
	}
	peers[0].NodeAddrs = []netip.Addr{netip.MustParseAddr("fd99::12")}
	s = Plan(self, peers, Options{})
	if len(s.Peers) != 2 || s.Routes[1].Via.String() != "fd99::12" {
		t.Errorf("with an IPv6 underlay address the direct peer needs no tunnel: peers %v, routes %v", s.Peers, s.Routes)
	}
	// A direct route that could not be written: the peer goes through the
	// tunnel with all its ranges.
	s = Plan(self, peers, Options{NoDirect: map[string]bool{"same": true}})
	if len(s.Peers) != 3 || s.Peers[0].Name != "same" || len(s.Peers[0].AllowedIPs) != 3 || s.Routes[0].Via.IsValid() || s.Routes[1].Via.IsValid() {
		t.Errorf("a peer whose direct route failed: peers %v, routes %v; want it in the tunnel", s.Peers, s.Routes)
	}
}

func pubKey(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func node(name string, k wgtypes.Key, cidrs ...string) peer.NodeInfo {
	n := peer.NodeInfo{Name: name, PublicKey: k, Endpoint: netip.MustParseAddrPort("10.99.0.1:51820")}
	for _, c := range cidrs {
		n.PodCIDRs = append(n.PodCIDRs, netip.MustParsePrefix(c))
	}
	return n
}

// TestKeysFill: the plan's peers take the agreed keys; with keys required a
// node peer without one is left off the device (its routes stay); a Peer
// object never gets one; the input is not changed.
func TestKeysFill(t *testing.T) {
	a, b, ext := pubKey(t), pubKey(t), pubKey(t)
	psk := pubKey(t)
	ps := []Peer{{Name: "a", PublicKey: a}, {Name: "b", PublicKey: b}, {Name: "peer/x", PublicKey: ext, External: true}}
	names := func(ps []Peer) (out []string) {
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s:%v", p.Name, p.PresharedKey == psk))
		}
		return out
	}
	for _, tc := range []struct {
		keys *Keys
		want string
	}{
		{nil, "[a:false b:false peer/x:false]"},
		{&Keys{PSK: map[wgtypes.Key]wgtypes.Key{a: psk, ext: psk}}, "[a:true b:false peer/x:false]"},
		{&Keys{PSK: map[wgtypes.Key]wgtypes.Key{a: psk}, Require: true}, "[a:true peer/x:false]"},
	} {
		if got := fmt.Sprint(names(tc.keys.Fill(ps))); got != tc.want {
			t.Errorf("Fill with %+v: %s, want %s", tc.keys, got, tc.want)
		}
	}
	if ps[0].PresharedKey != (wgtypes.Key{}) {
		t.Error("Fill changed its input")
	}
}

// TestPlanMarksLivePeers: a peer whose agent answers gossip is marked
// live (its keepalive does not fall asleep: mesh's TestLivePeerDoesNotFallAsleep);
// a node behind NAT rests no one.
func TestPlanMarksLivePeers(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24")
	peers := []peer.NodeInfo{node("live", pubKey(t), "10.244.2.0/24"), node("silent", pubKey(t), "10.244.3.0/24")}
	flags := func(s Mesh) map[string][2]bool {
		out := map[string][2]bool{}
		for _, p := range s.Peers {
			out[p.Name] = [2]bool{p.Rest, p.Live}
		}
		return out
	}
	if got := flags(Plan(self, peers, Options{Live: map[string]bool{"live": true}})); got["live"] != [2]bool{true, true} || got["silent"] != [2]bool{true, false} {
		t.Errorf("[rest live] %v, want the live peer marked live, both allowed to rest", got)
	}
	self.BehindNAT = true
	if got := flags(Plan(self, peers, Options{})); got["live"][0] || got["silent"][0] {
		t.Errorf("behind NAT: %v, want no peer resting", got)
	}
}
