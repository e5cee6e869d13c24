package policy

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
