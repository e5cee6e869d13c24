package agent

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/source/gossip"
)

// seeds are the --join seeds plus the gossip addresses of known peers
// (from Node annotations in Kubernetes, from the cache after a restart),
// those that answered WireGuard most recently first, then (joinSeeds) the
// oldest Nodes and the rest in turn, those on the device before those
// resting off it (on-demand: they carried no traffic): in a large cluster
// some Nodes have no agent behind them, and a join that tried them in name
// order would wait out their timeouts first.
func (a *Agent) seeds() []string {
	shook := map[wgtypes.Key]time.Time{}
	if m := a.meshUp.Load(); m != nil {
		if dev, err := m.Peers(); err == nil {
			for _, d := range dev {
				shook[d.PublicKey] = onDevice
				if d.LastHandshakeTime.After(onDevice) {
					shook[d.PublicKey] = d.LastHandshakeTime
				}
			}
		}
	}
	// A join reads only the first seeds, and a member alone tries again
	// every few seconds: at 5000 peers, copying every claim to sort them
	// was megabytes each attempt, so only the best MaxJoinSeeds are kept.
	best := make([]seed, 0, gossip.MaxJoinSeeds+1)
	oldest := make([]seed, 0, oldestSeeds+1)
	a.reg.EachPeer(func(c *peer.Claim) {
		if !c.GossipAddr.IsValid() {
			return
		}
		s := seed{c.GossipAddr, shook[c.PublicKey], rand.Uint64()}
		best = keepBest(best, s, gossip.MaxJoinSeeds)
		if !s.shook.After(onDevice) && !c.Created.IsZero() {
			oldest = keepBest(oldest, seed{c.GossipAddr, time.Time{}, ageDraw(c.Created)}, oldestSeeds)
		}
	})
	return joinSeeds(a.cfg.Join, best, oldest, gossip.MaxJoinSeeds)
}

// ageDraw orders Nodes by age, the oldest first (the largest draw), and
// those created in the same second (creationTimestamp's grain: a cluster's
// Nodes are often registered together) at random: ordered among themselves
// by anything fixed, a join would try the same few each time, and the lab
// at 5000 Nodes stayed alone behind 8 of them without an agent.
func ageDraw(created time.Time) uint64 {
	return uint64(math.MaxUint32-uint32(created.Unix()))<<32 | uint64(rand.Uint32())
}

// oldestSeeds is how many of a join's seeds are the oldest Nodes never
// heard from, when fewer have been heard from than a join tries.
const oldestSeeds = gossip.MaxJoinSeeds / 2

// joinSeeds is what a join tries: the --join seeds, the peers heard from
// (best, in its order), then the oldest Nodes never heard from and the
// rest of best (drawn at random), one of each in turn, n in all beyond
// --join. The oldest are the same for every agent, so agents that have
// heard from nobody (a first start; on-demand peers that rest) still meet:
// at 5000 Nodes of which 3 ran an agent, random draws alone left the 3
// alone for minutes. The random half still gives every peer its turn when
// the oldest have no agent behind them.
func joinSeeds(join []string, best, oldest []seed, n int) []string {
	out := slices.Clone(join)
	seen := map[netip.AddrPort]bool{}
	add := func(s seed) {
		if !seen[s.addr] && len(seen) < n {
			seen[s.addr] = true
			out = append(out, s.addr.String())
		}
	}
	i := 0
	for ; i < len(best) && best[i].shook.After(onDevice); i++ {
		add(best[i])
	}
	for j := 0; i < len(best) || j < len(oldest); i, j = i+1, j+1 {
		if j < len(oldest) {
			add(oldest[j])
		}
		if i < len(best) {
			add(best[i])
		}
	}
	return out
}

// onDevice orders a peer on the device that has not shaken hands before
// one off it (the zero time) and after every one that has.
var onDevice = time.Unix(1, 0)

// seed is a peer's gossip address, when WireGuard last heard from it, and a
// random draw that orders peers heard from at the same time (most: never).
type seed struct {
	addr  netip.AddrPort
	shook time.Time
	draw  uint64
}

// before says whether x is tried before y: heard from more recently, then
// by the draw.
func (x seed) before(y seed) bool {
	if c := x.shook.Compare(y.shook); c != 0 {
		return c > 0
	}
	return x.draw > y.draw
}

// keepBest inserts s into best (sorted, at most n long) if it is among the
// n first, so that choosing n of N seeds costs O(N n) time and O(n) memory.
func keepBest(best []seed, s seed, n int) []seed {
	if len(best) == n && !s.before(best[n-1]) {
		return best
	}
	i, _ := slices.BinarySearchFunc(best, s, func(e, t seed) int {
		if e.before(t) {
			return -1
		}
		return 1
	})
	best = slices.Insert(best, i, s)
	return best[:min(len(best), n)]
}
