package mesh

import (
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DormantAfter is how long a peer's persistent keepalive runs without a
// handshake before the mesh turns it off. A live peer shakes hands at least
// every ~2.5 min while its keepalive runs (WireGuard rekeys a session after
// 2 min of sending), so 3 min without one means nobody answers: a node that
// is down, or a Node object with no agent behind it. Left on, its keepalive
// makes wireguard-go send an initiation every 5 s for 90 s and start again
// 25 s later, forever: at a thousand dead peers, 200 initiations a second.
// Traffic to a dormant peer still starts a handshake (WireGuard does that
// on demand), and a handshake newer than the dormancy, from either end,
// turns the keepalive on again at the next Apply.
const DormantAfter = 3 * time.Minute

// NeverAnswered is how long a peer's keepalive runs before the mesh turns
// it off when the peer has not answered once since it was written: a
// live peer answers within a round trip, and an agent that comes up later
// starts the handshake itself (every agent does in its first minute,
// and on every new node). Waiting for DormantAfter instead would cost,
// at a thousand dead peers, three minutes of 200 initiations a second
// and a 64 KiB staged keepalive per peer.
const NeverAnswered = 30 * time.Second

// startGrace is how long after the mesh's first Apply new passive peers
// are still created the way a (re)starting agent needs (see resting).
const startGrace = time.Minute

// dormancy is the mesh's memory of keepalives: when each was last turned
// on, and which peers are dormant since when. Both are pruned to the
// desired peers at every Apply.
type dormancy struct {
	start   time.Time // the first rest: the agent's start
	on      map[wgtypes.Key]time.Time
	dormant map[wgtypes.Key]time.Time
	fell    []wgtypes.Key // peers that fell asleep in the last rest
}

// rest returns desired (a copy where it changes) with the keepalive off for
// each peer that may rest (Peer.Rest) and has not answered: its keepalive
// has run DormantAfter with no handshake in that time, or NeverAnswered
// with none at all. A new passive peer
// (Peer.Passive) is created dormant. A dormant peer that has shaken hands
// since wakes.
func (d *dormancy) rest(desired []Peer, actual []wgtypes.Peer, now time.Time) []Peer {
	if d.on == nil {
		d.on, d.dormant = map[wgtypes.Key]time.Time{}, map[wgtypes.Key]time.Time{}
		d.start = now
	}
	have := make(map[wgtypes.Key]wgtypes.Peer, len(actual))
	for _, p := range actual {
		have[p.PublicKey] = p
	}
	want := make(map[wgtypes.Key]bool, len(desired))
	out := desired
	copied := false
	d.fell = d.fell[:0]
	for i, p := range desired {
		want[p.PublicKey] = true
		a, exists := have[p.PublicKey]
		_, was := d.dormant[p.PublicKey]
		if !d.resting(p, a, exists, now) {
			continue
		}
		if exists && !was {
			d.fell = append(d.fell, p.PublicKey)
		}
		if !copied {
			out = append([]Peer(nil), desired...)
			copied = true
		}
		out[i].Keepalive = 0
	}
	for k := range d.on {
		if !want[k] {
			delete(d.on, k)
		}
	}
	for k := range d.dormant {
		if !want[k] {
			delete(d.dormant, k)
		}
	}
	return out
}

// resting decides whether p's keepalive is off now (a is the device's
// view of it, if it exists there) and updates the memory.
func (d *dormancy) resting(p Peer, a wgtypes.Peer, exists bool, now time.Time) bool {
	k := p.PublicKey
	if !p.Rest || p.Keepalive == 0 || (!exists && (!p.Passive || now.Sub(d.start) < startGrace)) {
		delete(d.on, k)
		delete(d.dormant, k)
		return false
	}
	if !exists {
		// A new passive peer starts dormant: the other end's handshake
		// wakes it (one write per new node, not two). Not in the agent's
		// first minute: after a restart the other end may still hold a
		// session with this node's previous run and would not shake
		// hands until it expires, so this end starts one (DiffPeers
		// defers its keepalive to the next Apply).
		delete(d.on, k)
		d.dormant[k] = now
		return true
	}
	if since, ok := d.dormant[k]; ok {
		if !a.LastHandshakeTime.After(since) {
			return true
		}
		delete(d.dormant, k)
		d.on[k] = now
		return false
	}
	on, ok := d.on[k]
	if !ok {
		d.on[k] = now
		return false
	}
	if p.Live {
		// Its agent answers gossip: a silence on WireGuard is a fault to
		// keep trying through (and to see), not a Node without an agent.
		return false
	}
	if a.LastHandshakeTime.IsZero() {
		if now.Sub(on) < NeverAnswered {
			return false
		}
	} else if now.Sub(on) < DormantAfter || now.Sub(a.LastHandshakeTime) < DormantAfter {
		return false
	}
	d.dormant[k] = now
	return true
}

// fallen returns the peers that fell asleep in the last rest. The mesh
// removes each before writing it again, in the same write: turning the
// keepalive off leaves wireguard-go retrying the handshake under way (for
// up to 90 s) with a keepalive packet (a 64 KiB buffer) staged; a peer
// written anew has neither.
func (d *dormancy) fallen() map[wgtypes.Key]bool {
	out := make(map[wgtypes.Key]bool, len(d.fell))
	for _, k := range d.fell {
		out[k] = true
	}
	return out
}

// wake forgets pub's dormancy: its keepalive was just written on.
func (d *dormancy) wake(pub wgtypes.Key, now time.Time) {
	if d.on == nil {
		return
	}
	if _, ok := d.dormant[pub]; ok {
		delete(d.dormant, pub)
		d.on[pub] = now
	}
}

// isDormant reports whether pub's keepalive is resting.
func (d *dormancy) isDormant(pub wgtypes.Key) bool {
	_, ok := d.dormant[pub]
	return ok
}

// count is the number of dormant peers.
func (d *dormancy) count() int { return len(d.dormant) }

// Rest is the mesh's memory of keepalives, for a successor (package
// handover): without it a handed-over mesh would wake every dormant peer.
// Keys are peers' public keys (base64).
//
// Resting are the peers off the device (on-demand peers): a successor
// keeps them off instead of writing every peer, and shakes hands with
// none of them. Awake are those on it that may rest: the successor writes
// them, and a peer in neither (new since) starts resting. A predecessor
// that sends no Awake (older) has every peer not resting start awake.
type Rest struct {
	Start   time.Time            `json:"start"`
	On      map[string]time.Time `json:"on,omitempty"`
	Dormant map[string]time.Time `json:"dormant,omitempty"`
	Resting []string             `json:"resting,omitempty"`
	Awake   []string             `json:"awake,omitempty"`
}

// Rest returns the writer's memory of keepalives and the resting peers.
func (m *Mesh) Rest() Rest {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Rest{Start: m.rest.start, On: keyed(m.rest.on), Dormant: keyed(m.rest.dormant)}
	if m.od != nil {
		for k := range m.od.resting {
			r.Resting = append(r.Resting, k.String())
		}
		if m.od.desired != nil {
			r.Awake = m.od.awake()
		}
	}
	return r
}

// Restore takes over a predecessor's memory of keepalives, and with
// on-demand peers its resting set and start (so no start grace: the
// sessions were handed over), before the first Apply. Entries that are
// not keys are dropped.
func (m *Mesh) Restore(r Rest) {
	if r.Start.IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rest.start, m.rest.on, m.rest.dormant = r.Start, unkeyed(r.On), unkeyed(r.Dormant)
	m.publishDormant()
	if o := m.od; o != nil {
		o.start = r.Start
		for _, s := range r.Resting {
			if k, err := wgtypes.ParseKey(s); err == nil {
				o.resting[k] = Peer{PublicKey: k} // the first Apply fills it in
			}
		}
		o.cfg.Awake = nil
		if r.Awake != nil {
			awake := map[wgtypes.Key]bool{}
			for _, s := range r.Awake {
				if k, err := wgtypes.ParseKey(s); err == nil {
					awake[k] = true
				}
			}
			o.cfg.Awake = func(k wgtypes.Key) bool { return awake[k] }
		}
		o.publish()
	}
}

func keyed(in map[wgtypes.Key]time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(in))
	for k, t := range in {
		out[k.String()] = t
	}
	return out
}

func unkeyed(in map[string]time.Time) map[wgtypes.Key]time.Time {
	out := make(map[wgtypes.Key]time.Time, len(in))
	for s, t := range in {
		if k, err := wgtypes.ParseKey(s); err == nil {
			out[k] = t
		}
	}
	return out
}
