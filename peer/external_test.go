package peer

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func external(t *testing.T, name string, created int, allowed ...string) External {
	e := External{Name: name, PublicKey: pubKey(t), Created: time.Unix(int64(created), 0)}
	for _, a := range allowed {
		e.AllowedIPs = append(e.AllowedIPs, netip.MustParsePrefix(a))
	}
	return e
}

// TestAcceptExternals: a Peer object takes only ranges inside the
// --external-cidr list (none: nothing), never a node's or the cluster's,
// and of two claiming one range the one accepted before, else the older,
// wins; the answer does not depend on this node's own networks.
func TestAcceptExternals(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24")
	nodes := []NodeInfo{node("node2", pubKey(t), "10.244.2.0/24")}
	open := Bounds{
		ClusterCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ExternalCIDRs: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("fd00:200::/48")},
	}
	cases := []struct {
		name     string
		bounds   Bounds
		previous []string
		ext      []External
		accepted []string
		rejected []string // name:reason
	}{
		{"inside", open, nil, []External{external(t, "a", 1, "10.200.1.0/24", "fd00:200::/64")}, []string{"a"}, nil},
		{"no external range: nothing", Bounds{ClusterCIDRs: open.ClusterCIDRs}, nil, []External{external(t, "a", 1, "10.200.1.0/24")}, nil, []string{"a:external-outside"}},
		{"a public /8", open, nil, []External{external(t, "a", 1, "8.0.0.0/8")}, nil, []string{"a:external-outside"}},
		{"NAT64", open, nil, []External{external(t, "a", 1, "64:ff9b::/96")}, nil, []string{"a:external-outside"}},
		{"wider than the open range", open, nil, []External{external(t, "a", 1, "10.200.0.0/15")}, nil, []string{"a:external-outside"}},
		{"one range of two outside", open, nil, []External{external(t, "a", 1, "10.200.1.0/24", "10.96.0.0/16")}, nil, []string{"a:external-outside"}},
		{"the older wins, whatever the names", open, nil,
			[]External{external(t, "zz", 1, "10.200.1.0/24"), external(t, "aa", 2, "10.200.1.0/25")}, []string{"zz"}, []string{"aa:external-overlap"}},
		{"accepted before wins over older", open, []string{"aa"},
			[]External{external(t, "zz", 1, "10.200.1.0/24"), external(t, "aa", 2, "10.200.1.0/25")}, []string{"aa"}, []string{"zz:external-overlap"}},
		{"same age: the name", open, nil,
			[]External{external(t, "b", 1, "10.200.1.0/24"), external(t, "a", 1, "10.200.1.0/25")}, []string{"a"}, []string{"b:external-overlap"}},
		{"a node's range inside an open range", Bounds{ExternalCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil,
			[]External{external(t, "a", 1, "10.244.2.0/25")}, nil, []string{"a:external-overlap"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, rej := AcceptExternals(self, tc.bounds, nodes, tc.ext, tc.previous)
			var got, gotRej []string
			for _, e := range ok {
				got = append(got, e.Name)
			}
			for _, r := range rej {
				gotRej = append(gotRej, r.Name+":"+string(r.Reason))
			}
			if strings.Join(got, ",") != strings.Join(tc.accepted, ",") || strings.Join(gotRej, ",") != strings.Join(tc.rejected, ",") {
				t.Errorf("accepted %v rejected %v; want %v and %v", got, gotRej, tc.accepted, tc.rejected)
			}
		})
	}
	// Every node judges alike: the underlay of the judging node plays no part.
	a, _ := AcceptExternals(self, Bounds{ExternalCIDRs: open.ExternalCIDRs, Underlay: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}}, nodes,
		[]External{external(t, "a", 1, "10.200.1.0/24")}, nil)
	if len(a) != 1 {
		t.Error("a node's own underlay changed its judgment of a Peer object")
	}
}

func TestParseExternalRefusesEndpointInsideItsRange(t *testing.T) {
	_, err := ParseExternal("loop", ExternalSpec{PublicKey: pubKey(t).String(), AllowedIPs: []string{"10.200.9.0/24"}, Endpoint: "10.200.9.1:51820"})
	if err == nil || !strings.Contains(err.Error(), "inside the peer's own allowed IP") {
		t.Fatalf("endpoint inside the peer's range: %v", err)
	}
	if _, err := ParseExternal("ok", ExternalSpec{PublicKey: pubKey(t).String(), AllowedIPs: []string{"10.200.9.0/24"}, Endpoint: "10.99.0.5:51820"}); err != nil {
		t.Fatal(err)
	}
}
