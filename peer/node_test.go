package peer

import (
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func pubKey(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestMetaRoundTrip(t *testing.T) {
	n := NodeInfo{Name: "node1", PublicKey: pubKey(t), Endpoint: netip.MustParseAddrPort("10.99.0.11:51820"),
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}}
	b, err := EncodeMeta(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta("node1", b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PublicKey != n.PublicKey || got.Endpoint != n.Endpoint || len(got.PodCIDRs) != 2 || got.PodCIDRs[1] != n.PodCIDRs[1] {
		t.Fatalf("round trip: %+v != %+v", got, n)
	}
}

func TestDecodeMetaRejectsHostileClaims(t *testing.T) {
	k := pubKey(t).String()
	meta := func(key, ep string, cidrs ...string) string {
		return `{"v":1,"k":"` + key + `","e":"` + ep + `","c":["` + strings.Join(cidrs, `","`) + `"]}`
	}
	cases := []struct {
		name, meta, want string
	}{
		{"not json", "hello", "not valid"},
		{"unknown field", `{"v":1,"k":"` + k + `","e":"10.0.0.1:1","c":["10.244.1.0/24"],"x":1}`, "unknown field"},
		{"version 2", `{"v":2}`, "version 2"},
		{"oversized", `{"v":1,"k":"` + strings.Repeat("A", 600) + `"}`, "over 512"},
		{"short key", meta("AAAA", "10.0.0.1:51820", "10.244.1.0/24"), "public key"},
		{"zero key", meta(wgtypes.Key{}.String(), "10.0.0.1:51820", "10.244.1.0/24"), "all zero"},
		{"endpoint is a name", meta(k, "evil.example:51820", "10.244.1.0/24"), "want ip:port"},
		{"endpoint port 0", meta(k, "10.0.0.1:0", "10.244.1.0/24"), "unicast ip and a port"},
		{"endpoint loopback", meta(k, "127.0.0.1:51820", "10.244.1.0/24"), "unicast ip"},
		{"endpoint multicast", meta(k, "239.1.1.1:51820", "10.244.1.0/24"), "unicast ip"},
		{"no cidr", `{"v":1,"k":"` + k + `","e":"10.0.0.1:51820","c":[]}`, "want one or two"},
		{"three cidrs", meta(k, "10.0.0.1:51820", "10.244.1.0/24", "10.244.2.0/24", "fd00::/64"), "want one or two"},
		{"default route", meta(k, "10.0.0.1:51820", "0.0.0.0/0"), "too large"},
		{"v6 default route", meta(k, "10.0.0.1:51820", "::/0"), "too large"},
		{"host bits", meta(k, "10.0.0.1:51820", "10.244.1.1/24"), "host bits"},
		{"two v4", meta(k, "10.0.0.1:51820", "10.244.1.0/24", "10.244.2.0/24"), "one CIDR per address family"},
		{"loopback range", meta(k, "10.0.0.1:51820", "127.0.0.0/24"), "not a unicast range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMeta("x", []byte(tc.meta))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
