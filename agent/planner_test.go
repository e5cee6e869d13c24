package agent

import (
	"fmt"
	"testing"
)

func TestPlan(t *testing.T) {
	self := node("node1", pubKey(t), "10.244.1.0/24", "fd00:10:244:1::/64")
	cases := []struct {
		name   string
		self   NodeInfo
		peers  []NodeInfo
		addrs  string
		routes string
	}{
		{"alone", self, nil, "[10.244.1.1/32 fd00:10:244:1::1/128]", "[]"},
		{"dual-stack peers", self, []NodeInfo{node("a", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64"), node("b", pubKey(t), "10.244.3.0/24")},
			"[10.244.1.1/32 fd00:10:244:1::1/128]",
			"[10.244.2.0/24<-10.244.1.1 fd00:10:244:2::/64<-fd00:10:244:1::1 10.244.3.0/24<-10.244.1.1]"},
		{"v4-only node, v6 peer range has no source", node("n", pubKey(t), "10.244.1.0/24"), []NodeInfo{node("a", pubKey(t), "10.244.2.0/24", "fd00:10:244:2::/64")},
			"[10.244.1.1/32]", "[10.244.2.0/24<-10.244.1.1 fd00:10:244:2::/64<-invalid IP]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Plan(tc.self, tc.peers)
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
