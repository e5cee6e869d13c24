package agent

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

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
	// A join reads only the first seeds: at 5000 peers, formatting every
	// address (and copying every claim) was megabytes each attempt.
	type known struct {
		addr  netip.AddrPort
		shook time.Time
	}
	var ks []known
	for _, c := range a.reg.Peers() {
		if c.GossipAddr.IsValid() {
			ks = append(ks, known{c.GossipAddr, shook[c.PublicKey]})
		}
	}
	rand.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	slices.SortStableFunc(ks, func(x, y known) int { return y.shook.Compare(x.shook) })
	out := slices.Clone(a.cfg.Join)
	for _, k := range ks[:min(len(ks), gossip.MaxJoinSeeds)] {
		out = append(out, k.addr.String())
	}
	return out
}
