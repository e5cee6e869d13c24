package plan

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/peer"
)

// TestEgressNAT: this node's pods are the sources to masquerade; the
// cluster CIDRs and every node's pod CIDRs (merged) and endpoint are
// reached without NAT; the cluster's pod
// addresses (for the agent-port guard) are the cluster CIDRs and every
// node's pod CIDRs, merged.
func TestEgressNAT(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	self := peer.NodeInfo{Name: "n1", Endpoint: netip.MustParseAddrPort("10.99.0.11:51820"), PodCIDRs: pfx("10.244.1.0/24")}
	peers := []peer.NodeInfo{
		{Name: "n2", Endpoint: netip.MustParseAddrPort("10.99.0.12:51820"), PodCIDRs: pfx("10.244.2.0/24")},
		{Name: "x", Endpoint: netip.MustParseAddrPort("10.99.0.13:51820"), PodCIDRs: pfx("10.250.0.0/24")},
	}
	e := EgressNAT(true, pfx("192.168.0.0/16"), pfx("10.244.0.0/16"), self, peers)
	if !slices.Equal(e.PodCIDRs, pfx("10.244.1.0/24")) {
		t.Errorf("sources %v", e.PodCIDRs)
	}
	if want := pfx("10.99.0.11/32", "10.99.0.12/32", "10.99.0.13/32", "10.244.0.0/16", "10.250.0.0/24", "192.168.0.0/16"); !slices.Equal(e.NoMasquerade, want) {
		t.Errorf("no-masquerade %v, want %v (the cluster CIDR covers n1 and n2)", e.NoMasquerade, want)
	}
	if want := pfx("10.244.0.0/16", "10.250.0.0/24"); !slices.Equal(e.ClusterPods, want) {
		t.Errorf("cluster pods %v, want %v (the cluster CIDR covers n1 and n2)", e.ClusterPods, want)
	}
	if e.Equal(EgressNAT(true, nil, pfx("10.244.0.0/16"), self, peers)) {
		t.Error("a change of no-masquerade ranges compares equal")
	}
}
