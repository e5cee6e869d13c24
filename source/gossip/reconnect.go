package gossip

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Reconnecting: memberlist alone never heals a partition that lasted
// longer than GossipToTheDeadTime (30 s). Each side declares the other
// dead, stops gossiping to it after those 30 s and never contacts it
// again, and a member joins only while it is alone, so two halves stay two
// clusters after the network is whole again. In standalone mode gossip is
// the authority, so each half would keep the other's peers off its data
// plane for good. Like Serf's reconnect, a member that is not alone tries,
// every reconnectEvery, one former member (one that died or left, drawn at
// random) and one seed that is not a member (a peer it knows of from the
// API server, the cache or --join), whatever the cluster's size: a join
// that reaches one of them merges the halves, and memberlist's
// refutations bring the rest back.
const (
	reconnectEvery = 30 * time.Second
	// A former member is tried for reconnectFor after it went (Serf's
	// reconnect_timeout); at most maxFormer are remembered, the oldest
	// forgotten first.
	reconnectFor = 24 * time.Hour
	maxFormer    = 1024
)

// former is a member that died or left: where it was, and when it went.
type former struct {
	addr netip.AddrPort
	went time.Time
}

// remember records a member that died or left.
func (g *Source) remember(n *memberlist.Node) {
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok || n.Name == g.name {
		return
	}
	g.formerMu.Lock()
	defer g.formerMu.Unlock()
	if _, had := g.former[n.Name]; !had && len(g.former) >= maxFormer {
		oldest := ""
		for name, f := range g.former {
			if oldest == "" || f.went.Before(g.former[oldest].went) {
				oldest = name
			}
		}
		delete(g.former, oldest)
	}
	g.former[n.Name] = former{netip.AddrPortFrom(a.Unmap(), n.Port), time.Now()}
}

// forget drops a former member that is back.
func (g *Source) forget(name string) {
	g.formerMu.Lock()
	defer g.formerMu.Unlock()
	delete(g.former, name)
}

// reconnectSeeds are what one reconnect tries: a former member of the last
// reconnectFor and a seed (Config.Seeds) that is not a member, each drawn
// at random.
func (g *Source) reconnectSeeds() []string {
	members := map[string]bool{}
	for _, m := range g.ml.Members() {
		if a, ok := netip.AddrFromSlice(m.Addr); ok {
			members[netip.AddrPortFrom(a.Unmap(), m.Port).String()] = true
		}
	}
	var gone []string
	g.formerMu.Lock()
	for name, f := range g.former {
		switch {
		case time.Since(f.went) > reconnectFor:
			delete(g.former, name)
		case !members[f.addr.String()]:
			gone = append(gone, f.addr.String())
		}
	}
	g.formerMu.Unlock()
	var out []string
	if len(gone) > 0 {
		out = append(out, gone[rand.IntN(len(gone))])
	}
	if g.seeds != nil {
		var strangers []string
		for _, s := range g.seeds() {
			if !members[s] && !slices.Contains(out, s) {
				strangers = append(strangers, s)
			}
		}
		if len(strangers) > 0 {
			out = append(out, strangers[rand.IntN(len(strangers))])
		}
	}
	return out
}

// reconnect tries the reconnect seeds once; a join that reaches one is
// logged, one that does not only at debug level (most former members are
// gone for good).
func (g *Source) reconnect() {
	seeds := g.reconnectSeeds()
	if len(seeds) == 0 {
		return
	}
	before := g.ml.NumMembers()
	n, err := g.join(seeds)
	if n == 0 {
		g.log.Debug("gossip reconnect reached nobody", "seeds", seeds, "err", err)
		return
	}
	g.log.Info("gossip reconnected", "seeds", seeds, "members_before", before, "members", g.ml.NumMembers())
}
