package agent

import (
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
			claims := map[string]NodeInfo{}
			for _, c := range tc.claims {
				claims[c.Name] = c
			}
			acc, rej := Accept(self, tc.previous, claims)
			var gotA, gotR []string
			for _, n := range acc {
				gotA = append(gotA, n.Name)
			}
			for _, r := range rej {
				gotR = append(gotR, r.Name+":"+r.Reason)
			}
			slices.Sort(gotR)
			if !slices.Equal(gotA, tc.accepted) || !slices.Equal(gotR, tc.rejected) {
				t.Fatalf("accepted %v rejected %v; want %v and %v", gotA, gotR, tc.accepted, tc.rejected)
			}
		})
	}
}

func TestRegistryReportsEachRejectionOnce(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24")
	var got []string
	r := NewRegistry(self, func(rej Rejection) { got = append(got, rej.Name+":"+rej.Reason) })
	bad := node("a", pubKey(t), "10.244.1.0/25")
	r.Set(SourceGossip, bad)
	r.Set(SourceGossip, bad) // same claim again: no new report
	r.Set(SourceGossip, node("b", pubKey(t), "10.244.2.0/24"))
	if strings.Join(got, ",") != "a:cidr-overlap" {
		t.Fatalf("reports = %v, want one cidr-overlap for a", got)
	}
	peers, _ := r.Peers()
	if len(peers) != 1 || peers[0].Name != "b" {
		t.Fatalf("peers = %v", peers)
	}
	r.Reject("c", "gossip: metadata is not valid")
	r.Reject("c", "gossip: metadata is not valid")
	if len(got) != 2 || got[1] != "c:invalid" {
		t.Fatalf("reports = %v", got)
	}
	select {
	case <-r.Changed():
	default:
		t.Fatal("Changed did not fire")
	}
}

func TestRegistryDeleteFromOnlyTouchesItsSource(t *testing.T) {
	r := NewRegistry(node("node1", pubKey(t), "10.244.1.0/24"), nil)
	n := node("a", pubKey(t), "10.244.2.0/24")
	r.Set(SourceCache, n)
	r.Set(SourceGossip, n) // gossip confirmed it
	r.DeleteFrom(SourceCache, "a")
	if peers, src := r.Peers(); len(peers) != 1 || src["a"] != SourceGossip {
		t.Fatalf("cache expiry removed a gossip-confirmed peer: %v %v", peers, src)
	}
}
