package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func node(name string, k wgtypes.Key, cidrs ...string) NodeInfo {
	n := NodeInfo{Name: name, PublicKey: k, Endpoint: netip.MustParseAddrPort("10.99.0.1:51820")}
	for _, c := range cidrs {
		n.PodCIDRs = append(n.PodCIDRs, netip.MustParsePrefix(c))
	}
	return n
}

func TestAccept(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24", "fd00:10:244:1::/64")
	ka, kb, kc := pubKey(t), pubKey(t), pubKey(t)
	cases := []struct {
		name     string
		previous []string
		claims   []NodeInfo
		accepted []string
		rejected []string // name:reason
	}{
		{"nothing", nil, nil, nil, nil},
		{"two good peers", nil, []NodeInfo{node("b", kb, "10.244.3.0/24"), node("a", ka, "10.244.2.0/24")}, []string{"a", "b"}, nil},
		{"claims our name", nil, []NodeInfo{node("node1", ka, "10.244.2.0/24")}, nil, []string{"node1:self"}},
		{"claims our key", nil, []NodeInfo{node("a", self.PublicKey, "10.244.2.0/24")}, nil, []string{"a:duplicate-key"}},
		{"two nodes one key", nil, []NodeInfo{node("a", ka, "10.244.2.0/24"), node("b", ka, "10.244.3.0/24")}, []string{"a"}, []string{"b:duplicate-key"}},
		{"overlaps our v4 range", nil, []NodeInfo{node("a", ka, "10.244.1.128/25")}, nil, []string{"a:cidr-overlap"}},
		{"overlaps our v6 range", nil, []NodeInfo{node("a", ka, "10.244.2.0/24", "fd00:10:244::/48")}, nil, []string{"a:cidr-overlap"}},
		{"supernet of ours", nil, []NodeInfo{node("a", ka, "10.244.0.0/16")}, nil, []string{"a:cidr-overlap"}},
		{"newcomers overlap: name decides", nil, []NodeInfo{node("b", kb, "10.244.2.0/24"), node("a", ka, "10.244.2.0/25")}, []string{"a"}, []string{"b:cidr-overlap"}},
		{"incumbent keeps its range", []string{"b"}, []NodeInfo{node("b", kb, "10.244.2.0/24"), node("a", ka, "10.244.2.0/25")}, []string{"b"}, []string{"a:cidr-overlap"}},
		{"gone incumbent frees the range", []string{"z"}, []NodeInfo{node("a", ka, "10.244.2.0/24")}, []string{"a"}, nil},
		{"mixed", []string{"c"}, []NodeInfo{node("a", ka, "10.244.4.0/24"), node("b", kb, "10.244.7.0/24"), node("c", kc, "10.244.4.0/23")}, []string{"b", "c"}, []string{"a:cidr-overlap"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkAccept(t, self, Bounds{}, tc.previous, tc.claims, tc.accepted, tc.rejected)
		})
	}
}

// checkAccept runs Accept on claims (all from gossip) and compares the
// names accepted and the name:reason pairs refused.
func checkAccept(t *testing.T, self NodeInfo, bounds Bounds, previous []string, claims []NodeInfo, accepted, rejected []string) {
	t.Helper()
	byName := map[string]Claim{}
	for _, c := range claims {
		byName[c.Name] = Claim{c, SourceGossip}
	}
	acc, rej := Accept(self, bounds, previous, byName)
	var gotA, gotR []string
	for _, n := range acc {
		gotA = append(gotA, n.Name)
	}
	for _, r := range rej {
		gotR = append(gotR, r.Name+":"+string(r.Reason))
	}
	slices.Sort(gotR)
	if !slices.Equal(gotA, accepted) || !slices.Equal(gotR, rejected) {
		t.Fatalf("accepted %v rejected %v; want %v and %v", gotA, gotR, accepted, rejected)
	}
}

// TestAcceptBounds: a claim outside the cluster's pod ranges, or covering
// the underlay or a node's address, never becomes a peer, whoever makes it.
func TestAcceptBounds(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24", "fd00:10:244:1::/64")
	bounds := Bounds{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")},
		Underlay:     []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")},
	}
	at := func(n NodeInfo, ep string) NodeInfo { n.Endpoint = netip.MustParseAddrPort(ep); return n }
	ka, kb := pubKey(t), pubKey(t)
	cases := []struct {
		name     string
		bounds   Bounds
		claims   []NodeInfo
		accepted []string
		rejected []string
	}{
		{"inside the cluster", bounds, []NodeInfo{node("a", ka, "10.244.2.0/24", "fd00:10:244:2::/64")}, []string{"a"}, nil},
		{"a public /8", bounds, []NodeInfo{node("a", ka, "8.0.0.0/8")}, nil, []string{"a:outside-cluster-cidr"}},
		{"v6 outside", bounds, []NodeInfo{node("a", ka, "10.244.2.0/24", "2001:db8::/64")}, nil, []string{"a:outside-cluster-cidr"}},
		{"straddles the cluster CIDR", bounds, []NodeInfo{node("a", ka, "10.244.0.0/15")}, nil, []string{"a:outside-cluster-cidr"}},
		{"no cluster CIDR: anything not overlapping", Bounds{}, []NodeInfo{node("a", ka, "8.0.0.0/8")}, []string{"a"}, nil},
		{"covers the underlay", Bounds{Underlay: bounds.Underlay}, []NodeInfo{at(node("a", ka, "10.98.0.0/15"), "10.97.0.1:51820")}, nil, []string{"a:covers-node-address"}},
		{"inside a wide underlay", Bounds{Underlay: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, []NodeInfo{node("a", ka, "10.244.2.0/24")}, []string{"a"}, nil},
		{"covers this node's address", Bounds{}, []NodeInfo{at(node("a", ka, "10.99.0.0/26"), "10.98.0.1:51820")}, nil, []string{"a:covers-node-address"}},
		{"covers another node's address", Bounds{}, []NodeInfo{at(node("a", ka, "10.244.2.0/24"), "10.98.0.7:51820"), at(node("b", kb, "10.98.0.0/24"), "10.99.0.8:51820")},
			[]string{"a"}, []string{"b:covers-node-address"}},
		{"endpoint inside an accepted range", Bounds{}, []NodeInfo{at(node("a", ka, "10.244.2.0/24"), "10.99.0.7:51820"), at(node("b", kb, "10.244.3.0/24"), "10.244.2.9:51820")},
			[]string{"a"}, []string{"b:covers-node-address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkAccept(t, self, tc.bounds, nil, tc.claims, tc.accepted, tc.rejected)
		})
	}
}

func TestAcceptRanksNodeObjectsFirst(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24")
	claims := map[string]Claim{
		"a": {node("a", pubKey(t), "10.244.2.0/25"), SourceProvisional}, // sorts first by name
		"b": {node("b", pubKey(t), "10.244.2.0/24"), SourceKubernetes},
	}
	acc, rej := Accept(self, Bounds{}, []string{"a"}, claims)
	if len(acc) != 1 || acc[0].Name != "b" || len(rej) != 1 || rej[0].Name != "a" {
		t.Fatalf("accepted %v rejected %v; a provisional claim must never take a Node's range", acc, rej)
	}
}

func TestMerge(t *testing.T) {
	k1, k2, k3 := pubKey(t), pubKey(t), pubKey(t)
	ep := func(n NodeInfo, s string) NodeInfo { n.Endpoint = netip.MustParseAddrPort(s); return n }
	kubeA := node("a", k1, "10.244.2.0/24")
	kubeA.NodeAddrs = []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.9")}
	cases := []struct {
		name     string
		src      Sources
		claims   []string // name:source:endpoint
		rejected []string // name:reason
	}{
		{"standalone: gossip over cache", Sources{
			Gossip: map[string]NodeInfo{"a": ep(kubeA, "10.99.0.5:51820")},
			Cache:  map[string]NodeInfo{"a": kubeA, "b": node("b", k2, "10.244.3.0/24")}},
			[]string{"a:gossip:10.99.0.5:51820", "b:cache:10.99.0.1:51820"}, nil},
		{"kube: gossip agreeing moves the endpoint", Sources{KubeMode: true, APIUp: true,
			Kube:   map[string]NodeInfo{"a": kubeA},
			Gossip: map[string]NodeInfo{"a": ep(kubeA, "10.99.0.9:51820")}},
			[]string{"a:kubernetes:10.99.0.9:51820"}, nil},
		{"kube: gossip moving the endpoint off the Node's addresses is refused", Sources{KubeMode: true, APIUp: true,
			Kube:   map[string]NodeInfo{"a": kubeA},
			Gossip: map[string]NodeInfo{"a": ep(kubeA, "10.99.0.66:51820")}},
			[]string{"a:kubernetes:10.99.0.1:51820"}, []string{"a:gossip-contradicts-node"}},
		{"kube: gossip with another key is refused", Sources{KubeMode: true, APIUp: true,
			Kube:   map[string]NodeInfo{"a": kubeA},
			Gossip: map[string]NodeInfo{"a": ep(node("a", k3, "10.244.2.0/24"), "10.99.0.66:51820")}},
			[]string{"a:kubernetes:10.99.0.1:51820"}, []string{"a:gossip-contradicts-node"}},
		{"kube: gossip with other CIDRs is refused", Sources{KubeMode: true, APIUp: true,
			Kube:   map[string]NodeInfo{"a": kubeA},
			Gossip: map[string]NodeInfo{"a": node("a", k1, "10.244.9.0/24")}},
			[]string{"a:kubernetes:10.99.0.1:51820"}, []string{"a:gossip-contradicts-node"}},
		{"kube, API up: gossip-only node refused, cache ignored", Sources{KubeMode: true, APIUp: true,
			Gossip: map[string]NodeInfo{"x": node("x", k2, "10.244.7.0/24")},
			Cache:  map[string]NodeInfo{"c": node("c", k3, "10.244.8.0/24")}},
			nil, []string{"x:not-a-node"}},
		{"kube, API down: cache stands in, gossip-only is provisional", Sources{KubeMode: true, APIUp: false,
			Gossip: map[string]NodeInfo{"x": node("x", k2, "10.244.7.0/24")},
			Cache:  map[string]NodeInfo{"c": node("c", k3, "10.244.8.0/24")}},
			[]string{"c:cache:10.99.0.1:51820", "x:gossip-provisional:10.99.0.1:51820"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.Kube == nil {
				tc.src.Kube = map[string]NodeInfo{}
			}
			claims, rej := Merge(tc.src)
			var got, gotR []string
			for n, c := range claims {
				got = append(got, n+":"+string(c.Source)+":"+c.Endpoint.String())
			}
			for _, r := range rej {
				gotR = append(gotR, r.Name+":"+string(r.Reason))
			}
			slices.Sort(got)
			slices.Sort(gotR)
			if !slices.Equal(got, tc.claims) || !slices.Equal(gotR, tc.rejected) {
				t.Fatalf("claims %v rejected %v; want %v and %v", got, gotR, tc.claims, tc.rejected)
			}
		})
	}
}

func TestRegistryReportsEachRejectionOnce(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24")
	var got []string
	r := NewRegistry(self, false, Bounds{}, func(rej Rejection) { got = append(got, rej.Name+":"+string(rej.Reason)) })
	bad := node("a", pubKey(t), "10.244.1.0/25")
	// The agent reads the peers each time Changed fires; rejections are
	// found (and reported) then.
	r.Set(SourceGossip, bad)
	r.Peers()
	bad.Endpoint = netip.MustParseAddrPort("10.99.0.9:51820")
	r.Set(SourceGossip, bad) // refused again for the same reason: no new report
	r.Peers()
	r.Set(SourceGossip, node("b", pubKey(t), "10.244.2.0/24"))
	r.Peers()
	if strings.Join(got, ",") != "a:cidr-overlap" {
		t.Fatalf("reports = %v, want one cidr-overlap for a", got)
	}
	peers := r.Peers()
	if len(peers) != 1 || peers[0].Name != "b" {
		t.Fatalf("peers = %v", peers)
	}
	r.Reject(SourceGossip, "c", "metadata is not valid")
	r.Reject(SourceGossip, "c", "metadata is not valid")
	if len(got) != 2 || got[1] != "c:invalid" {
		t.Fatalf("reports = %v", got)
	}
	select {
	case <-r.Changed():
	default:
		t.Fatal("Changed did not fire")
	}
}

// TestRegistryRepeatedClaimIsNoChange: a source saying again what it said
// (an informer resync, a Node heartbeat) does not wake the agent; a claim
// that differs in any field does.
func TestRegistryRepeatedClaimIsNoChange(t *testing.T) {
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), true, Bounds{}, nil)
	n := node("a", pubKey(t), "10.244.2.0/24")
	n.NodeAddrs = []netip.Addr{n.Endpoint.Addr()}
	r.Set(SourceKubernetes, n)
	<-r.Changed()
	r.Set(SourceKubernetes, n)
	select {
	case <-r.Changed():
		t.Fatal("the same claim again fired Changed")
	default:
	}
	n.NodeAddrs = append(slices.Clone(n.NodeAddrs), netip.MustParseAddr("fd99::9"))
	r.Set(SourceKubernetes, n)
	select {
	case <-r.Changed():
	default:
		t.Fatal("a claim with another node address did not fire Changed")
	}
}

func TestRegistryCacheExpiryKeepsGossipPeers(t *testing.T) {
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), false, Bounds{}, nil)
	n := node("a", pubKey(t), "10.244.2.0/24")
	r.Set(SourceCache, n)
	r.Set(SourceGossip, n) // gossip confirmed it
	r.Delete(SourceCache, "a")
	if peers := r.Peers(); len(peers) != 1 || peers[0].Source != SourceGossip {
		t.Fatalf("cache expiry removed a gossip-confirmed peer: %v", peers)
	}
}

// TestRegistryInvalidClaimsAreBounded: a gossip key holder inventing names
// for invalid claims cannot grow the registry without bound, and a claim
// refused again after the memory was cleared is reported again (once).
func TestRegistryInvalidClaimsAreBounded(t *testing.T) {
	reports := 0
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), false, Bounds{}, func(Rejection) { reports++ })
	for i := range 10 * maxInvalid {
		r.Reject(SourceGossip, fmt.Sprintf("bogus-%d", i), "metadata is not valid")
	}
	r.mu.Lock()
	n := len(r.invalid)
	r.mu.Unlock()
	if n > maxInvalid {
		t.Fatalf("%d invalid claims remembered; want at most %d", n, maxInvalid)
	}
	if reports != 10*maxInvalid {
		t.Fatalf("%d reports for %d distinct invalid claims", reports, 10*maxInvalid)
	}
}

// EachPeer and PeerInfos see what Peers returns, in its order, with a change applied
// first and the rejection it causes reported (as Peers does).
func TestRegistryEachPeerIsPeers(t *testing.T) {
	var reports []string
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), false, Bounds{}, func(rej Rejection) { reports = append(reports, rej.Name) })
	r.Set(SourceGossip, node("b", pubKey(t), "10.244.3.0/24"))
	r.Set(SourceGossip, node("a", pubKey(t), "10.244.2.0/24"))
	r.Set(SourceGossip, node("bad", pubKey(t), "10.244.1.0/25")) // this node's range
	var each []string
	r.EachPeer(func(c *Claim) { each = append(each, c.Name) })
	if strings.Join(each, ",") != "a,b" || strings.Join(reports, ",") != "bad" {
		t.Fatalf("EachPeer saw %v and reported %v, want a,b and bad", each, reports)
	}
	var peers []string
	for _, c := range r.Peers() {
		peers = append(peers, c.Name)
	}
	var infos []string
	for _, n := range r.PeerInfos() {
		infos = append(infos, n.Name)
	}
	if !slices.Equal(each, peers) || !slices.Equal(infos, peers) {
		t.Fatalf("EachPeer %v, PeerInfos %v, Peers %v", each, infos, peers)
	}
}

// TestPeerInfosSince: the accepted peers are copied only when they changed
// since the caller's version: after a new claim or a deletion; not when
// nothing changed, nor when a source said again what it had said.
func TestPeerInfosSince(t *testing.T) {
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), false, Bounds{}, nil)
	r.Set(SourceGossip, node("a", pubKey(t), "10.244.2.0/24"))
	peers, v, changed := r.PeerInfosSince(0)
	if !changed || len(peers) != 1 || peers[0].Name != "a" {
		t.Fatalf("first read: %v %v", peers, changed)
	}
	if peers, again, changed := r.PeerInfosSince(v); changed || peers != nil || again != v {
		t.Fatalf("nothing changed, yet read %v (version %d → %d)", peers, v, again)
	}
	b := node("b", pubKey(t), "10.244.3.0/24")
	for _, change := range []func(){
		func() { r.Set(SourceGossip, b) },
		func() { r.Delete(SourceGossip, "a") },
	} {
		change()
		var now uint64
		if peers, now, changed = r.PeerInfosSince(v); !changed || now == v {
			t.Fatalf("after a change: changed %v, version %d → %d", changed, v, now)
		}
		if want := r.PeerInfos(); !slices.EqualFunc(peers, want, Same) {
			t.Fatalf("read %v, PeerInfos has %v", peers, want)
		}
		v = now
	}
	r.Set(SourceGossip, b) // said again
	if _, again, changed := r.PeerInfosSince(v); changed || again != v {
		t.Errorf("a claim said again moved the version %d → %d", v, again)
	}
}
