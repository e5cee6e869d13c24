package agent

import (
	"fmt"
	"maps"
	"reflect"

	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// What a pass plans, kept for the next. At 5000 Nodes a resync pass (every
// 30 s) planned every peer afresh: ~13 MB of garbage a pass (README, stop
// 51), resident until the release after it (the most RSS in a steady minute)
// and, with the collection it costs, most of an idle agent's CPU. A pass
// whose inputs are the last one's reuses what the last one planned: the
// accepted peers, externals, the plan, its keys and the egress plan. It
// still compares the device, routes and addresses with them (mesh.Apply,
// the egress writer), which is what a resync is for.
type passMemo struct {
	version uint64 // the registry's accepted peers (Registry.PeerInfosSince)
	peers   []peer.NodeInfo
	self    peer.NodeInfo

	extOK          bool
	listed, ext    []peer.External // the Peer objects as listed, and as accepted
	planOK         bool
	pmtu           map[string]int
	noDirect, live map[string]bool
	plan           mesh.State // Plan's, before the keys (writeKey fills one peer with a newer one)
	keysOK         bool
	keys           *plan.Keys
	state          mesh.State // plan with the keys
	egressOK       bool
	egress         plan.Egress
}

// passPeers are the accepted peers, and whether they or this node changed
// since the last pass (then nothing the last pass planned holds).
func (a *Agent) passPeers() ([]peer.NodeInfo, bool) {
	m := &a.memo
	peers, v, changed := a.reg.PeerInfosSince(m.version)
	if !changed && reflect.DeepEqual(a.self, m.self) {
		return m.peers, false
	}
	if !changed {
		peers = m.peers
	}
	a.memo = passMemo{version: v, peers: peers, self: a.self}
	return peers, true
}

// passExternals are the Peer objects accepted, judged again when they or
// the peers changed.
func (a *Agent) passExternals(peers []peer.NodeInfo) []peer.External {
	m := &a.memo
	listed := a.ext.List()
	if m.extOK && reflect.DeepEqual(listed, m.listed) {
		return m.ext
	}
	m.listed, m.ext, m.extOK = listed, a.acceptExternals(peers, listed), true
	m.planOK, m.egressOK = false, false
	return m.ext
}

// passState is the state the pass wants: planned again when an input
// changed, filled with the keys again when they changed.
func (a *Agent) passState(peers []peer.NodeInfo, ext []peer.External) mesh.State {
	m := &a.memo
	opts := plan.Options{PathMTU: a.pathMTUs(), Externals: ext, NoDirect: a.noDirect.names(), Live: a.live(peers)}
	if why := replanWhy(m, opts); why != "" {
		if m.planOK {
			// Peers unchanged: at 5000 Nodes this pass costs what a
			// change does, so say what moved.
			a.log.Info("planning again", "why", why)
		}
		m.plan = plan.Plan(a.self, peers, opts)
		m.pmtu, m.noDirect, m.live, m.planOK, m.keysOK = opts.PathMTU, opts.NoDirect, opts.Live, true, false
	}
	keys := a.pq.Keys()
	if !m.keysOK || !sameKeys(keys, m.keys) {
		m.state = m.plan
		m.state.Peers = keys.Fill(m.plan.Peers)
		m.keys, m.keysOK = keys, true
	}
	return m.state
}

// passEgress is the egress plan (plan.EgressNAT), made again when the
// peers or externals changed.
func (a *Agent) passEgress(peers []peer.NodeInfo, ext []peer.External) plan.Egress {
	m := &a.memo
	if !m.egressOK {
		m.egress = plan.EgressNAT(a.cfg.Masquerade, a.cfg.NoMasquerade, a.cfg.ClusterCIDRs, a.self, peers, ext...)
		m.egress.Strict, m.egress.Tunnel = a.cfg.StrictEncryption, a.cfg.Interface
		m.egressOK = true
	}
	return m.egress
}

// sameKeys says whether two key snapshots hold the same keys.
func sameKeys(x, y *plan.Keys) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.Require == y.Require && maps.Equal(x.PSK, y.PSK)
}

// replanWhy says which of a pass's inputs other than the peers moved since
// the last plan ("" when none did).
func replanWhy(m *passMemo, opts plan.Options) string {
	switch {
	case !m.planOK:
		return "peers"
	case !maps.Equal(opts.PathMTU, m.pmtu):
		return "path MTU"
	case !maps.Equal(opts.NoDirect, m.noDirect):
		return "direct paths"
	case !maps.Equal(opts.Live, m.live):
		return fmt.Sprintf("gossip: %d alive, was %d", len(opts.Live), len(m.live))
	}
	return ""
}
