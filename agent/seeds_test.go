package agent

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// keepBest keeps exactly what sorting every seed would put first: those
// heard from most recently, ties in the order of their draws.
func TestKeepBestIsTheSortsHead(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1_700_000_000, 0)
	for trial := range 200 {
		all := make([]seed, r.IntN(300))
		for i := range all {
			var shook time.Time
			if r.IntN(4) == 0 { // most were never heard from
				shook = base.Add(time.Duration(r.IntN(5)) * time.Second)
			}
			all[i] = seed{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 7946), shook, r.Uint64()}
		}
		n := 1 + r.IntN(20)
		var best []seed
		for _, s := range all {
			best = keepBest(best, s, n)
		}
		want := slices.Clone(all)
		slices.SortFunc(want, func(x, y seed) int {
			if x.before(y) {
				return -1
			}
			return 1
		})
		want = want[:min(n, len(want))]
		if !slices.Equal(best, want) {
			t.Fatalf("trial %d, n=%d of %d: kept %v, the sort's head is %v", trial, n, len(all), best, want)
		}
	}
}

// Among peers never heard from, every one gets its turn: a join that
// always tried the same 16 of 5000 Nodes (some without an agent) could
// stay alone.
func TestKeepBestTriesEveryPeerInTurn(t *testing.T) {
	const peers, n = 100, 16
	tried := map[int]bool{}
	for range 200 {
		var best []seed
		for i := range peers {
			best = keepBest(best, seed{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946), time.Time{}, rand.Uint64()}, n)
		}
		if len(best) != n {
			t.Fatalf("kept %d seeds, want %d", len(best), n)
		}
		for _, s := range best {
			tried[int(s.addr.Addr().As4()[3])] = true
		}
	}
	if len(tried) != peers {
		t.Fatalf("200 joins tried %d of %d peers", len(tried), peers)
	}
}
