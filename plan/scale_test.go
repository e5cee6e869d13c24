package plan

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/peertest"
)

// BenchmarkPlan1000 is one reconcile's plan of a node with 1000 peers.
func BenchmarkPlan1000(b *testing.B) {
	nodes := peertest.Nodes(1001)
	self, peers := nodes[0], nodes[1:]
	b.ReportAllocs()
	for b.Loop() {
		m := Plan(self, peers, Options{})
		if len(m.Peers) != 1000 || len(m.Routes) != 2000 {
			b.Fatalf("%d peers, %d routes", len(m.Peers), len(m.Routes))
		}
	}
}

// TestRangesMatchLinearScan: ranges.contains answers as a scan over the
// prefixes does, overlapping ones and both families included.
func TestRangesMatchLinearScan(t *testing.T) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.0/24"),
		netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.1.1.0/24"),
		netip.MustParsePrefix("255.255.255.0/24"), netip.MustParsePrefix("fd00::/64"),
		netip.MustParsePrefix("fd00::/48"), netip.MustParsePrefix("::/128"),
	}
	r := newRanges(ps)
	for _, s := range []string{"10.244.3.9", "10.244.255.255", "10.245.0.0", "10.1.0.255", "10.1.1.0", "10.1.2.0",
		"255.255.255.255", "0.0.0.0", "fd00::1", "fd00:0:ffff::1", "fd00:1::", "::", "::1", "10.243.255.255"} {
		a := netip.MustParseAddr(s)
		want := false
		for _, p := range ps {
			want = want || p.Contains(a)
		}
		if got := r.contains(a); got != want {
			t.Errorf("contains(%s) = %v, want %v", a, got, want)
		}
	}
}

// BenchmarkEgressNAT1000 is one reconcile's egress sets of a node with
// 1000 peers.
func BenchmarkEgressNAT1000(b *testing.B) {
	nodes := peertest.Nodes(1001)
	self, peers := nodes[0], nodes[1:]
	cluster := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	b.ReportAllocs()
	for b.Loop() {
		e := EgressNAT(true, nil, cluster, self, peers)
		if len(e.ClusterPods) != 2 {
			b.Fatalf("cluster pods %v", e.ClusterPods)
		}
	}
}
