package mesh

import (
	"net/netip"
	"sync"
)

// PathMTUs are the tunnel MTUs learned per peer: when a send to a peer's
// endpoint is too big for the path (the kernel learned a smaller path MTU
// from an ICMP "fragmentation needed" or "packet too big"), that peer's
// tunnel routes get the MTU the path carries, so senders learn it (TCP
// from the route, pods from the node's ICMP) instead of losing packets.
// Learned MTUs stay for the life of the peer's endpoint: the kernel's
// record of the path expires after minutes; ours does not, so the tunnel
// does not fall back into the hole.
type PathMTUs struct {
	mu     sync.Mutex
	byPeer map[string]learnedMTU
	kick   chan struct{} // a send was too big: look again (Kick)
}

type learnedMTU struct {
	endpoint netip.Addr
	mtu      int
}

// NewPathMTUs is an empty record; its TooBig goes in DeviceConfig.
func NewPathMTUs() *PathMTUs {
	return &PathMTUs{byPeer: map[string]learnedMTU{}, kick: make(chan struct{}, 1)}
}

// TooBig is the device's report of a send over the path MTU.
func (p *PathMTUs) TooBig(netip.Addr) {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Learn asks the kernel for the path MTU to each peer's endpoint and keeps
// the smallest tunnel MTU each has needed; it reports whether one changed.
// endpoints are the device's (learned) endpoints by peer name. The kernel
// is asked before the lock is taken: status readers never wait on netlink.
func (p *PathMTUs) Learn(endpoints map[string]netip.Addr, linkMTU int) (changed bool) {
	pmtus := make(map[string]int, len(endpoints))
	for name, ep := range endpoints {
		if pmtu, ok := PathMTU(ep); ok {
			pmtus[name] = pmtu
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, ep := range endpoints {
		old, had := p.byPeer[name]
		if had && old.endpoint != ep {
			delete(p.byPeer, name) // a new path: learn it anew
			had, changed = false, true
		}
		pmtu, ok := pmtus[name]
		if !ok {
			continue
		}
		mtu := pmtu - Overhead
		if mtu >= linkMTU || had && mtu >= old.mtu {
			continue
		}
		p.byPeer[name] = learnedMTU{endpoint: ep, mtu: mtu}
		changed = true
	}
	for name := range p.byPeer {
		if _, ok := endpoints[name]; !ok {
			delete(p.byPeer, name)
			changed = true
		}
	}
	return changed
}

// Snapshot is the learned MTUs by peer name, for plan.Plan.
func (p *PathMTUs) Snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.byPeer))
	for n, l := range p.byPeer {
		out[n] = l.mtu
	}
	return out
}

// Kick receives when a send was too big: Learn again.
func (p *PathMTUs) Kick() <-chan struct{} { return p.kick }
