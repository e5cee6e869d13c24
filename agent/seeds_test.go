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

// A peer on the device that has not shaken hands comes after those that
// have and before those resting off it: with on-demand peers, the awake
// are the ones that carried traffic.
func TestSeedsOnTheDeviceBeforeTheResting(t *testing.T) {
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946)
	}
	for range 50 {
		var best []seed
		for i := range 100 {
			var shook time.Time // resting: off the device
			switch i {
			case 7:
				shook = time.Now()
			case 40, 90:
				shook = onDevice
			}
			best = keepBest(best, seed{addr(i), shook, rand.Uint64()}, 4)
		}
		if best[0].addr != addr(7) || !slices.Contains([]netip.AddrPort{addr(40), addr(90)}, best[1].addr) ||
			!slices.Contains([]netip.AddrPort{addr(40), addr(90)}, best[2].addr) {
			t.Fatalf("seeds %v; want 10.0.0.7 (shook hands), then 10.0.0.40 and 10.0.0.90 (on the device), then the resting", best)
		}
	}
}

// A join tries the peers heard from, then the oldest Nodes never heard
// from and the others in turn; the --join seeds come first, and no seed
// twice.
func TestJoinSeedsOldestInTurn(t *testing.T) {
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946)
	}
	best := []seed{{addr(1), time.Now(), 0}, {addr(2), onDevice, 0}, {addr(3), time.Time{}, 0}, {addr(4), time.Time{}, 0}}
	oldest := []seed{{addr(9), time.Time{}, 0}, {addr(3), time.Time{}, 0}, {addr(8), time.Time{}, 0}}
	got := joinSeeds([]string{"192.0.2.1:7946"}, best, oldest, 5)
	want := []string{"192.0.2.1:7946", "10.0.0.1:7946", "10.0.0.9:7946", "10.0.0.2:7946", "10.0.0.3:7946", "10.0.0.8:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("seeds %v, want %v", got, want)
	}
}

// The oldest Nodes come first, and those created in the same second are
// drawn at random: a join tries each of them in turn.
func TestAgeDrawOldestFirstTiesAtRandom(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 23, 7, 40, 0, time.UTC)
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7946)
	}
	tried := map[int]bool{}
	for range 100 {
		var oldest []seed
		for i := range 40 {
			created := t0.Add(time.Second) // 30 Nodes in the same second
			if i < 10 {
				created = t0.Add(time.Duration(-i) * time.Millisecond) // 10 a second older
			}
			oldest = keepBest(oldest, seed{addr(i), time.Time{}, ageDraw(created)}, 12)
		}
		for k, s := range oldest {
			i := int(s.addr.Addr().As4()[3])
			if (k < 10) != (i < 10) {
				t.Fatalf("seed %d is 10.0.0.%d; want the 10 oldest first: %v", k, i, oldest)
			}
			tried[i] = true
		}
	}
	if len(tried) != 40 {
		t.Fatalf("100 joins tried %d of the 40 Nodes; want every one of the 30 created together in turn", len(tried))
	}
}
