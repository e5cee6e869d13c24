package mesh

import (
	"net/netip"
	"sync"
	"time"
)

// PathMTUs are the tunnel MTUs learned per peer: when a send to a peer's
// endpoint is too big for the path (the kernel learned a smaller path MTU
// from an ICMP "fragmentation needed" or "packet too big"), that peer's
// tunnel routes get the MTU the path carries, so senders learn it (TCP
// from the route, pods from the node's ICMP) instead of losing packets.
// Learned MTUs stay for the life of the peer's endpoint: the kernel's
// record of the path expires after minutes; ours does not, so the tunnel
// does not fall back into the hole.
//
// A report of a send over the path MTU stays pending until a Learn reads
// a path MTU for its address; while one is pending, Kick fires again every
// pendingRetry (for at most pendingFor): the bind reports a path once and
// then sends to it unsegmented, so one failed reading (the device busy, no
// route yet) would otherwise leave the peer unlearned for minutes.
type PathMTUs struct {
	mu       sync.Mutex
	byPeer   map[string]learnedMTU
	pending  map[netip.Addr]time.Time // reported too big, not yet read: since when
	retrying bool                     // a kick is scheduled for the pending ones
	kick     chan struct{}            // a send was too big: look again (Kick)
}

const (
	pendingRetry = time.Second
	pendingFor   = 30 * time.Second
	maxPending   = 4096 // bounded: endpoints come from peers
)

type learnedMTU struct {
	endpoint netip.Addr
	mtu      int
}

// NewPathMTUs is an empty record; its TooBig goes in DeviceConfig.
func NewPathMTUs() *PathMTUs {
	return &PathMTUs{byPeer: map[string]learnedMTU{}, pending: map[netip.Addr]time.Time{}, kick: make(chan struct{}, 1)}
}

// TooBig is the device's report of a send over the path MTU.
func (p *PathMTUs) TooBig(addr netip.Addr) {
	p.mu.Lock()
	if len(p.pending) >= maxPending {
		clear(p.pending)
	}
	if _, ok := p.pending[addr.Unmap()]; !ok {
		p.pending[addr.Unmap()] = time.Now()
	}
	p.mu.Unlock()
	p.poke()
}

func (p *PathMTUs) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// retryPending schedules another Kick while reports are pending; p.mu held.
func (p *PathMTUs) retryPending(now time.Time) {
	for a, since := range p.pending {
		if now.Sub(since) > pendingFor {
			delete(p.pending, a)
		}
	}
	if len(p.pending) == 0 || p.retrying {
		return
	}
	p.retrying = true
	time.AfterFunc(pendingRetry, func() {
		p.mu.Lock()
		p.retrying = false
		p.mu.Unlock()
		p.poke()
	})
}

// Unread is how many too-big reports no Learn has yet read a path MTU for.
func (p *PathMTUs) Unread() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Retry is for a Learn that could not run (the device unreadable): the
// pending reports are looked at again after pendingRetry.
func (p *PathMTUs) Retry() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retryPending(time.Now())
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
	defer p.retryPending(time.Now())
	for name, ep := range endpoints {
		if _, ok := pmtus[name]; ok {
			delete(p.pending, ep)
		}
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

// LearnedMTU is one peer's learned tunnel MTU, for a successor (package
// handover).
type LearnedMTU struct {
	Peer     string     `json:"peer"`
	Endpoint netip.Addr `json:"endpoint"`
	MTU      int        `json:"mtu"`
}

// Export is every learned MTU.
func (p *PathMTUs) Export() []LearnedMTU {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]LearnedMTU, 0, len(p.byPeer))
	for n, l := range p.byPeer {
		out = append(out, LearnedMTU{Peer: n, Endpoint: l.endpoint, MTU: l.mtu})
	}
	return out
}

// Restore takes over a predecessor's learned MTUs (the smallest one a
// peer needed wins, as in Learn); those of peers since gone are dropped
// by the next Learn.
func (p *PathMTUs) Restore(learned []LearnedMTU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range learned {
		if old, ok := p.byPeer[l.Peer]; l.MTU < 68 || l.MTU > 65535 || ok && old.mtu <= l.MTU {
			continue
		}
		p.byPeer[l.Peer] = learnedMTU{endpoint: l.Endpoint, mtu: l.MTU}
	}
}
