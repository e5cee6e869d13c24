package mesh

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestRestingTableFindsThePeer(t *testing.T) {
	a, b := wgtypes.Key{1}, wgtypes.Key{2}
	tbl := newRestingTable(map[wgtypes.Key]Peer{
		a: {AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64"), netip.MustParsePrefix("10.99.0.11/32")}},
		b: {AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
	})
	for _, c := range []struct {
		dst  string
		want wgtypes.Key
		ok   bool
	}{
		{"10.244.1.7", a, true},
		{"10.99.0.11", a, true},
		{"10.99.0.12", wgtypes.Key{}, false},
		{"10.244.2.255", b, true},
		{"10.244.3.1", wgtypes.Key{}, false},
		{"fd00:10:244:1::5", a, true},
		{"fd00:10:244:2::5", wgtypes.Key{}, false},
	} {
		pub, ok := tbl.lookup(packetTo(netip.MustParseAddr(c.dst)))
		if ok != c.ok || pub != c.want {
			t.Errorf("packet to %s: %v %v, want %v %v", c.dst, pub, ok, c.want, c.ok)
		}
	}
	for _, junk := range [][]byte{nil, {0x45}, make([]byte, 20), append([]byte{0x60}, make([]byte, 30)...)} {
		if _, ok := tbl.lookup(junk); ok {
			t.Errorf("%d bytes of junk named a peer", len(junk))
		}
	}
	var none *restingTable
	if _, ok := none.lookup(packetTo(netip.MustParseAddr("10.244.1.7"))); ok {
		t.Error("the empty table named a peer")
	}
}

// BenchmarkRestingLookup is the cost the TUN reader adds per outgoing
// packet while peers rest: 5000 resting peers, each a /24, a /64 and a
// node address, and a packet to an active peer (a miss: the common case).
func BenchmarkRestingLookup(b *testing.B) {
	peers := map[wgtypes.Key]Peer{}
	for i := range 5000 {
		k := wgtypes.Key{byte(i), byte(i >> 8), 1}
		peers[k] = Peer{AllowedIPs: []netip.Prefix{
			netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)),
			netip.MustParsePrefix(fmt.Sprintf("fd00:10:%x:%x::/64", i/256, i%256)),
			netip.MustParsePrefix(fmt.Sprintf("10.99.%d.%d/32", i/256, i%256)),
		}}
	}
	tbl := newRestingTable(peers)
	pkt := packetTo(netip.MustParseAddr("10.200.0.7"))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tbl.lookup(pkt); ok {
			b.Fatal("hit")
		}
	}
}

// packetTo is an IP header (v4: 20 bytes, v6: 40) addressed to dst.
func packetTo(dst netip.Addr) []byte {
	if dst.Is4() {
		p := make([]byte, 28)
		p[0] = 0x45
		a := dst.As4()
		copy(p[16:], a[:])
		return p
	}
	p := make([]byte, 48)
	p[0] = 0x60
	a := dst.As16()
	copy(p[24:], a[:])
	return p
}

// TestRestingTableChanges wakes and rests peers one change at a time, as
// the mesh does, and checks after each that the changed table answers
// every lookup as a table built afresh from the resting set would:
// through many deltas and new bases, and with a peer whose range moved to
// another peer while it was awake.
func TestRestingTableChanges(t *testing.T) {
	const n = 300
	key := func(i int) wgtypes.Key { return wgtypes.Key{byte(i), byte(i >> 8), 7} }
	ranges := func(i, cidr int) []netip.Prefix {
		return []netip.Prefix{
			netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+cidr/256, cidr%256)),
			netip.MustParsePrefix(fmt.Sprintf("10.99.%d.%d/32", i/256, i%256)),
		}
	}
	cidr := make([]int, n) // peer i's pod range
	resting := map[wgtypes.Key]Peer{}
	for i := range n {
		cidr[i] = i
		resting[key(i)] = Peer{AllowedIPs: ranges(i, i)}
	}
	tbl := newRestingTable(resting)
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 2000 {
		i := rng.IntN(n)
		pub := key(i)
		var woke, rested []wgtypes.Key
		moved := false // a resting peer's range changed: the mesh publishes afresh
		if _, ok := resting[pub]; ok {
			delete(resting, pub)
			woke = []wgtypes.Key{pub}
			if j := rng.IntN(n); step%7 == 0 && j != i {
				// Awake, i takes j's range; j gets i's.
				cidr[i], cidr[j] = cidr[j], cidr[i]
				for _, k := range []int{i, j} {
					if p, ok := resting[key(k)]; ok {
						p.AllowedIPs = ranges(k, cidr[k])
						resting[key(k)] = p
						moved = true
					}
				}
			}
		} else {
			resting[pub] = Peer{AllowedIPs: ranges(i, cidr[i])}
			rested = []wgtypes.Key{pub}
		}
		tbl = tbl.changed(woke, rested, resting)
		if moved {
			tbl = newRestingTable(resting)
		}
		want := newRestingTable(resting)
		if tbl.count() != want.count() {
			t.Fatalf("step %d: %d resting, want %d", step, tbl.count(), want.count())
		}
		for k := range n {
			if got, w := tbl.rests(key(k)), want.rests(key(k)); got != w {
				t.Fatalf("step %d: peer %d rests %v, want %v", step, k, got, w)
			}
			for _, p := range ranges(k, k) {
				pkt := packetTo(p.Addr().Next())
				gp, gok := tbl.lookup(pkt)
				wp, wok := want.lookup(pkt)
				if gp != wp || gok != wok {
					t.Fatalf("step %d: packet to %s: %v %v, want %v %v", step, p.Addr().Next(), gp, gok, wp, wok)
				}
			}
		}
	}
}

// BenchmarkRestingWake is what a wake costs the table at 5000 resting
// peers: the changed table (a delta copied; every restingDelta changes a
// new base).
func BenchmarkRestingWake(b *testing.B) {
	resting := map[wgtypes.Key]Peer{}
	for i := range 5000 {
		resting[wgtypes.Key{byte(i), byte(i >> 8), 1}] = Peer{AllowedIPs: []netip.Prefix{
			netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)),
			netip.MustParsePrefix(fmt.Sprintf("10.99.%d.%d/32", i/256, i%256)),
		}}
	}
	tbl := newRestingTable(resting)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pub := wgtypes.Key{byte(i), byte(i >> 8), 1}
		p := resting[pub]
		delete(resting, pub)
		tbl = tbl.changed([]wgtypes.Key{pub}, nil, resting)
		resting[pub] = p
		tbl = tbl.changed(nil, []wgtypes.Key{pub}, resting)
		i = (i + 1) % 5000
	}
}
