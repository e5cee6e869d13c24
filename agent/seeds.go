package agent

import (
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
// those that answered WireGuard most recently first and the rest in random
// order: in a large cluster some Nodes have no agent behind them, and a
// join that tried them in name order would wait out their timeouts first.
func (a *Agent) seeds() []string {
	shook := map[wgtypes.Key]time.Time{}
	if m := a.meshUp.Load(); m != nil {
		if dev, err := m.Peers(); err == nil {
			for _, d := range dev {
				shook[d.PublicKey] = d.LastHandshakeTime
			}
		}
	}
	// A join reads only the first seeds, and a member alone tries again
	// every few seconds: at 5000 peers, copying every claim to sort them
	// was megabytes each attempt, so only the best MaxJoinSeeds are kept.
	best := make([]seed, 0, gossip.MaxJoinSeeds+1)
	a.reg.EachPeer(func(c *peer.Claim) {
		if c.GossipAddr.IsValid() {
			best = keepBest(best, seed{c.GossipAddr, shook[c.PublicKey], rand.Uint64()}, gossip.MaxJoinSeeds)
		}
	})
	out := slices.Clone(a.cfg.Join)
	for _, s := range best {
		out = append(out, s.addr.String())
	}
	return out
}

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
