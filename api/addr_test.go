package api

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestDisjoint(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"10.244.1.0/24", "10.0.0.0/8", "10.99.0.11/32", "192.168.1.0/24", "192.168.1.0/24", "fd00:10:244:1::/64", "fd00::/8"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	if got := fmt.Sprint(Disjoint(ps)); got != "[10.0.0.0/8 192.168.1.0/24 fd00::/8]" {
		t.Fatalf("Disjoint = %s", got)
	}
}

func TestDisjointKeepsNeighboursAndDropsNested(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"10.1.0.0/16", "10.0.0.5/32", "10.1.2.3/32", "10.0.0.0/24", "10.0.1.0/24", "10.2.0.0/15", "10.3.0.1/32", "::/0", "10.0.0.4/32"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	if got := fmt.Sprint(Disjoint(ps)); got != "[10.0.0.0/24 10.0.1.0/24 10.1.0.0/16 10.2.0.0/15 ::/0]" {
		t.Fatalf("Disjoint = %s", got)
	}
}

func TestFirstAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.1.0/24":      "10.244.1.1",
		"10.244.0.0/16":      "10.244.0.1",
		"fd00:10:244:1::/64": "fd00:10:244:1::1",
	} {
		if got := FirstAddress(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("FirstAddress(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestDiffPrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	add, del := DiffPrefixes([]netip.Prefix{p("10.244.1.1/32"), p("fd00:10:244:1::1/128")}, []netip.Prefix{p("10.244.7.1/32"), p("fd00:10:244:1::1/128")})
	if len(add) != 1 || add[0] != p("10.244.1.1/32") || len(del) != 1 || del[0] != p("10.244.7.1/32") {
		t.Fatalf("add %v del %v", add, del)
	}
}
