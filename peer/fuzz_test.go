package peer

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/api"
)

// Fuzz targets for every parser of a claim. Each checks, beyond "no panic",
// that what it accepts keeps the promises the rest of weft relies on.

const seedKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

func checkCIDRs(t *testing.T, ps []netip.Prefix) {
	t.Helper()
	if len(ps) > 2 {
		t.Fatalf("accepted %d pod CIDRs", len(ps))
	}
	for _, p := range ps {
		if p != p.Masked() || checkPodCIDR(p) != nil {
			t.Fatalf("accepted pod CIDR %s that fails its own check", p)
		}
	}
	if len(ps) == 2 && ps[0].Addr().Is4() == ps[1].Addr().Is4() {
		t.Fatalf("accepted two CIDRs of one family: %v", ps)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"v":1,"k":"` + seedKey + `","e":"10.99.0.11:51820","c":["10.244.1.0/24","fd00:10:244:1::/64"]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"k":"","e":"[::1]:1","c":["0.0.0.0/0"],"x":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeMeta("node", b)
		if err != nil {
			return
		}
		checkCIDRs(t, n.PodCIDRs)
		if !n.Endpoint.IsValid() || n.Endpoint.Port() == 0 {
			t.Fatalf("accepted endpoint %v", n.Endpoint)
		}
		again, err := EncodeMeta(n)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if m, err := DecodeMeta("node", again); err != nil || !Same(m, n) {
			t.Fatalf("round trip: %+v, %v; want %+v", m, err, n)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(seedKey)
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("not a key")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		if k == [32]byte{} {
			t.Fatalf("%q accepted as the zero key", s)
		}
		if again, err := ParsePublicKey(k.String()); err != nil || again != k {
			t.Fatalf("%q parsed as %s, which does not parse back: %v", s, k, err)
		}
	})
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"10.99.0.11:51820", "[fd99::b]:51820", "example.com:1", "10.0.0.1:0", "[fe80::1%eth0]:1", "[::ffff:10.0.0.1]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		a := ap.Addr()
		if ap.Port() == 0 || a.Zone() != "" || a.Is4In6() || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
			t.Fatalf("%q accepted as %s", s, ap)
		}
	})
}

func FuzzParsePodCIDRs(f *testing.F) {
	f.Add("10.244.1.0/24", "fd00:10:244:1::/64")
	f.Add("0.0.0.0/0", "")
	f.Add("10.244.1.7/24", "10.244.2.0/24")
	f.Fuzz(func(t *testing.T, a, b string) {
		ps, err := ParsePodCIDRs([]string{a, b})
		if err == nil {
			checkCIDRs(t, ps)
		}
	})
}

func FuzzNodeInfoFromNode(f *testing.F) {
	f.Add(seedKey, "10.99.0.12:51820", "10.99.0.12:7946", "10.244.2.0/24", "fd00:10:244:2::/64", "10.99.0.12")
	f.Add(seedKey, "10.99.0.66:51820", "", "8.0.0.0/8", "", "10.99.0.12")
	f.Fuzz(func(t *testing.T, key, ep, ga, c1, c2, addr string) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2", Annotations: map[string]string{
			api.AnnotationPublicKey: key, api.AnnotationEndpoint: ep, api.AnnotationGossipAddress: ga}}}
		n.Spec.PodCIDRs = []string{c1, c2}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}
		info, ok, err := NodeInfoFromNode(n, api.DefaultTopologyLabel)
		if err != nil || !ok {
			return
		}
		checkCIDRs(t, info.PodCIDRs)
		if !slices.Contains(info.NodeAddrs, info.Endpoint.Addr()) {
			t.Fatalf("endpoint %s is not one of the Node's addresses %v", info.Endpoint, info.NodeAddrs)
		}
		if info.GossipAddr.IsValid() && !slices.Contains(info.NodeAddrs, info.GossipAddr.Addr()) {
			t.Fatalf("gossip address %s is not one of the Node's addresses %v", info.GossipAddr, info.NodeAddrs)
		}
	})
}

func FuzzDecodeCache(f *testing.F) {
	f.Add([]byte(`[{"name":"node2","publicKey":"` + seedKey + `","endpoint":"10.99.0.12:51820","gossipAddress":"10.99.0.12:7946","podCIDRs":["10.244.2.0/24"]}]`))
	f.Add([]byte(`[{"name":"x","podCIDRs":[]}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ns, err := DecodeCache(b)
		if err != nil {
			return
		}
		for _, n := range ns {
			checkCIDRs(t, n.PodCIDRs)
		}
		again, err := EncodeCache(ns)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCache(again)
		if err != nil || !slices.EqualFunc(back, ns, Same) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzAccept: whatever four nodes claim, the accepted peers' pod CIDRs are
// disjoint from each other and from this node's, inside the cluster CIDRs,
// and cover no accepted node's address; keys are unique.
func FuzzAccept(f *testing.F) {
	f.Add(uint8(1), uint8(2), uint8(16), uint8(24), uint8(3), uint8(12), uint8(8), uint8(99))
	f.Add(uint8(1), uint8(1), uint8(24), uint8(24), uint8(1), uint8(1), uint8(16), uint8(0))
	f.Fuzz(func(t *testing.T, a, b, bitsA, bitsB, keyA, keyB, ep, extra uint8) {
		self := NodeInfo{Name: "self", PublicKey: keyOf(0), Endpoint: netip.MustParseAddrPort("10.99.0.1:51820"),
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}}
		bounds := Bounds{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			Underlay: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}}
		claim := func(name string, third, bits, key, host uint8) Claim {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244 - extra%2, third, 0}), 8+int(bits)%23).Masked()
			return Claim{NodeInfo{Name: name, PublicKey: keyOf(key % 4),
				Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 99 + ep%2, 0, host}), 51820), PodCIDRs: []netip.Prefix{p}}, SourceGossip}
		}
		claims := map[string]Claim{
			"a": claim("a", a, bitsA, keyA, ep), "b": claim("b", b, bitsB, keyB, ep+1),
			"c": claim("c", a^b, bitsA^bitsB, keyA+1, extra), "self": claim("self", b, bitsB, 0, 1),
		}
		acc, _ := Accept(self, bounds, nil, claims)
		seenKeys := map[string]bool{self.PublicKey.String(): true}
		all := append([]Claim{{self, SourceKubernetes}}, acc...)
		for i, x := range acc {
			if seenKeys[x.PublicKey.String()] {
				t.Fatalf("key of %s accepted twice", x.Name)
			}
			seenKeys[x.PublicKey.String()] = true
			if _, err := bounds.CheckPodCIDRs(x.PodCIDRs); err != nil {
				t.Fatalf("accepted %s: %v", x.Name, err)
			}
			for j, y := range all {
				if j == i+1 {
					continue
				}
				for _, p := range x.PodCIDRs {
					if slices.ContainsFunc(y.PodCIDRs, p.Overlaps) {
						t.Fatalf("%s's %s overlaps %s's %v", x.Name, p, y.Name, y.PodCIDRs)
					}
					if p.Contains(y.Endpoint.Addr()) {
						t.Fatalf("%s's %s covers %s's endpoint", x.Name, p, y.Name)
					}
				}
			}
		}
	})
}

func keyOf(i uint8) (k [32]byte) {
	k[0], k[31] = i+1, 0x40
	return k
}
