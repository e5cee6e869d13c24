package mesh

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func wgPeer(k wgtypes.Key, ep string, keepalive time.Duration, cidrs ...string) wgtypes.Peer {
	p := wgtypes.Peer{PublicKey: k, PersistentKeepaliveInterval: keepalive}
	if ep != "" {
		p.Endpoint = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ep))
	}
	for _, c := range cidrs {
		_, n, _ := net.ParseCIDR(c)
		p.AllowedIPs = append(p.AllowedIPs, *n)
	}
	return p
}

func want(k wgtypes.Key, ep string, cidrs ...string) Peer {
	p := Peer{PublicKey: k, Endpoint: netip.MustParseAddrPort(ep), Keepalive: 25 * time.Second}
	for _, c := range cidrs {
		p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix(c))
	}
	return p
}

func TestDiffPeers(t *testing.T) {
	a, b, c := key(t), key(t), key(t)
	ka := 25 * time.Second
	type op struct {
		key    wgtypes.Key
		remove bool
	}
	cases := []struct {
		name    string
		desired []Peer
		actual  []wgtypes.Peer
		ops     []op
	}{
		{"empty", nil, nil, nil},
		{"add one", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24")}, nil, []op{{a, false}}},
		{"no-op", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24", "fd00:10:244:1::/64")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24", "fd00:10:244:1::/64")}, nil},
		{"no-op, allowed IPs in another order", []Peer{want(a, "10.99.0.11:51820", "fd00:10:244:1::/64", "10.244.1.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24", "fd00:10:244:1::/64")}, nil},
		{"no-op, endpoint reported v4-in-v6", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24")},
			[]wgtypes.Peer{wgPeer(a, "[::ffff:10.99.0.11]:51820", ka, "10.244.1.0/24")}, nil},
		{"endpoint moved", []Peer{want(a, "10.99.0.12:51820", "10.244.1.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24")}, []op{{a, false}}},
		{"pod CIDR added", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24", "fd00:10:244:1::/64")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24")}, []op{{a, false}}},
		{"pod CIDR changed", []Peer{want(a, "10.99.0.11:51820", "10.244.9.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24")}, []op{{a, false}}},
		{"keepalive off on device", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", 0, "10.244.1.0/24")}, []op{{a, false}}},
		{"remove one, keep one", []Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24"), wgPeer(b, "10.99.0.12:51820", ka, "10.244.2.0/24")},
			[]op{{b, true}}},
		{"replace all", []Peer{want(c, "10.99.0.13:51820", "10.244.3.0/24")},
			[]wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", ka, "10.244.1.0/24"), wgPeer(b, "10.99.0.12:51820", ka, "10.244.2.0/24")},
			[]op{{c, false}, {a, true}, {b, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := DiffPeers(tc.desired, tc.actual)
			if len(got) != len(tc.ops) {
				t.Fatalf("got %d changes, want %d: %+v", len(got), len(tc.ops), got)
			}
			for i, o := range tc.ops {
				if got[i].PublicKey != o.key || got[i].Remove != o.remove {
					t.Errorf("change %d = {%s remove=%v}, want {%s remove=%v}", i, got[i].PublicKey, got[i].Remove, o.key, o.remove)
				}
				if !o.remove && !got[i].ReplaceAllowedIPs {
					t.Errorf("change %d adds to AllowedIPs instead of replacing them", i)
				}
			}
		})
	}
}

func TestDiffPeersWritesExactlyThePodCIDRs(t *testing.T) {
	a := key(t)
	got, _ := DiffPeers([]Peer{want(a, "10.99.0.11:51820", "10.244.1.0/24", "fd00:10:244:1::/64")}, nil)
	if len(got) != 1 || len(got[0].AllowedIPs) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i, w := range []string{"10.244.1.0/24", "fd00:10:244:1::/64"} {
		if got[0].AllowedIPs[i].String() != w {
			t.Errorf("allowed IP %d = %s, want %s", i, got[0].AllowedIPs[i].String(), w)
		}
	}
}

func TestDiffRoutes(t *testing.T) {
	src := netip.MustParseAddr("10.244.1.1")
	r := func(dst string, s netip.Addr) Route { return Route{Dst: netip.MustParsePrefix(dst), Src: s} }
	add, del := DiffRoutes(
		[]Route{r("10.244.2.0/24", src), r("10.244.3.0/24", src), r("10.244.4.0/24", src)},
		[]Route{r("10.244.2.0/24", src), r("10.244.3.0/24", netip.Addr{}), r("10.244.9.0/24", src)},
	)
	if len(add) != 2 || add[0].Dst.String() != "10.244.3.0/24" || add[1].Dst.String() != "10.244.4.0/24" {
		t.Errorf("add = %v, want 10.244.3.0/24 (source fixed) and 10.244.4.0/24", add)
	}
	if len(del) != 1 || del[0].Dst.String() != "10.244.9.0/24" {
		t.Errorf("del = %v, want 10.244.9.0/24", del)
	}
	if add, del := DiffRoutes([]Route{r("10.244.2.0/24", src)}, []Route{r("10.244.2.0/24", src)}); add != nil || del != nil {
		t.Errorf("no-op diff = %v, %v", add, del)
	}
}

// A passive peer is created without keepalive, then gets it on the next diff.
func TestDiffPeersDefersPassiveKeepalive(t *testing.T) {
	a := key(t)
	p := want(a, "10.99.0.11:51820", "10.244.1.0/24")
	p.Passive = true
	cfgs, deferred := DiffPeers([]Peer{p}, nil)
	if len(cfgs) != 1 || deferred != 1 || *cfgs[0].PersistentKeepaliveInterval != 0 {
		t.Fatalf("create: %+v deferred=%d; want keepalive 0 and one deferred", cfgs, deferred)
	}
	cfgs, deferred = DiffPeers([]Peer{p}, []wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", 0, "10.244.1.0/24")})
	if len(cfgs) != 1 || deferred != 0 || *cfgs[0].PersistentKeepaliveInterval != 25*time.Second {
		t.Fatalf("next diff: %+v deferred=%d; want keepalive turned on", cfgs, deferred)
	}
	cfgs, _ = DiffPeers([]Peer{p}, []wgtypes.Peer{wgPeer(a, "10.99.0.11:51820", 25*time.Second, "10.244.1.0/24")})
	if len(cfgs) != 0 {
		t.Fatalf("settled passive peer still written: %+v", cfgs)
	}
}

// TestDiffPeersKeepsALearnedEndpoint: a node behind NAT is reached where its
// handshakes come from; while that session lives, neither the claimed
// endpoint nor a change of allowed IPs writes the static endpoint over it.
func TestDiffPeersKeepsALearnedEndpoint(t *testing.T) {
	k := key(t)
	ka := 25 * time.Second
	d := want(k, "10.98.1.2:51820", "10.244.3.0/24")
	d.Roaming = true
	natted := wgPeer(k, "10.99.0.254:40123", ka, "10.244.3.0/24")
	natted.LastHandshakeTime = time.Now().Add(-30 * time.Second)
	if cfgs, _ := DiffPeers([]Peer{d}, []wgtypes.Peer{natted}); len(cfgs) != 0 {
		t.Fatalf("a live learned endpoint was rewritten: %+v", cfgs)
	}
	d.Roaming = false
	if cfgs, _ := DiffPeers([]Peer{d}, []wgtypes.Peer{natted}); len(cfgs) != 1 || cfgs[0].Endpoint.String() != "10.98.1.2:51820" {
		t.Fatalf("a peer not behind NAT must get its announced endpoint back: %+v", cfgs)
	}
	d.Roaming = true
	d2 := want(k, "10.98.1.2:51820", "10.244.3.0/24", "fd00:10:244:3::/64")
	d2.Roaming = true
	cfgs, _ := DiffPeers([]Peer{d2}, []wgtypes.Peer{natted})
	if len(cfgs) != 1 || cfgs[0].Endpoint != nil {
		t.Fatalf("new allowed IPs must keep the learned endpoint (Endpoint nil): %+v", cfgs)
	}
	natted.LastHandshakeTime = time.Now().Add(-4 * time.Minute) // the session lapsed
	cfgs, _ = DiffPeers([]Peer{d}, []wgtypes.Peer{natted})
	if len(cfgs) != 1 || cfgs[0].Endpoint == nil || cfgs[0].Endpoint.String() != "10.98.1.2:51820" {
		t.Fatalf("after the session lapsed the claimed endpoint must be written again: %+v", cfgs)
	}
}

// TestDiffPeersPresharedKey: a peer whose preshared key differs from the
// device's is written with the key (and zero writes "none"); an equal key
// is no write.
func TestDiffPeersPresharedKey(t *testing.T) {
	a := key(t)
	psk := key(t)
	d := want(a, "10.99.0.11:51820", "10.244.1.0/24")
	d.PresharedKey = psk
	dev := wgPeer(a, "10.99.0.11:51820", 25*time.Second, "10.244.1.0/24")
	cfgs, _ := DiffPeers([]Peer{d}, []wgtypes.Peer{dev})
	if len(cfgs) != 1 || cfgs[0].PresharedKey == nil || *cfgs[0].PresharedKey != psk {
		t.Fatalf("a new key was not written: %+v", cfgs)
	}
	dev.PresharedKey = psk
	if cfgs, _ := DiffPeers([]Peer{d}, []wgtypes.Peer{dev}); len(cfgs) != 0 {
		t.Fatalf("an unchanged key was written: %+v", cfgs)
	}
	d.PresharedKey = wgtypes.Key{}
	cfgs, _ = DiffPeers([]Peer{d}, []wgtypes.Peer{dev})
	if len(cfgs) != 1 || cfgs[0].PresharedKey == nil || *cfgs[0].PresharedKey != (wgtypes.Key{}) {
		t.Fatalf("dropping the key did not write zero: %+v", cfgs)
	}
}
