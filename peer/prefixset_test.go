package peer

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestPrefixSetMatchesLinearScan: for random prefixes (both families,
// clustered so overlaps happen), the set answers overlap and contains as a
// scan over everything added does.
func TestPrefixSetMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := func() netip.Prefix {
		if r.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(4)), byte(r.IntN(256))})
			return netip.PrefixFrom(a, 20+r.IntN(13)).Masked()
		}
		var b [16]byte
		b[0], b[1], b[7] = 0xfd, 0, byte(r.IntN(8))
		b[8] = byte(r.IntN(256))
		return netip.PrefixFrom(netip.AddrFrom16(b), 56+r.IntN(73)).Masked()
	}
	for round := range 50 {
		s := newPrefixSet(0)
		var held []ownedPrefix
		for i := range 200 {
			p := random()
			got, ok := s.overlap(p)
			var want bool
			for _, h := range held {
				if h.prefix.Overlaps(p) {
					want = true
				}
			}
			if ok != want || ok && !got.prefix.Overlaps(p) {
				t.Fatalf("round %d: overlap(%s) = %v %v, want %v (held %d)", round, p, got, ok, want, len(held))
			}
			a := p.Addr()
			gotC, okC := s.contains(a)
			wantC := false
			for _, h := range held {
				if h.prefix.Contains(a) {
					wantC = true
				}
			}
			if okC != wantC || okC && !gotC.prefix.Contains(a) {
				t.Fatalf("round %d: contains(%s) = %v %v, want %v", round, a, gotC, okC, wantC)
			}
			if !ok && i%2 == 0 || i%7 == 0 { // overlapping ones too (addresses may repeat)
				s.add(p, "n")
				held = append(held, ownedPrefix{p, "n"})
			}
		}
	}
}
