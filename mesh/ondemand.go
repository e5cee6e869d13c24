package mesh

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/wgnoise"
)

// On-demand peers (docs/design.md, "On-demand peers"): a peer that carried
// nothing for a while leaves the WireGuard device, which costs wireguard-go
// ~80 KiB and a few goroutines per peer; its routes stay. It comes back
// when the node sends it a packet (the TUN reader sees the destination in
// the resting table, holds the packet and asks for a wake) or when it
// starts a handshake (the bind reads the initiator's key, holds the
// initiation and hands it to wireguard-go once the peer is back). The
// wake is one device write, done by the waker goroutine under the mesh's
// writer lock; the held packets then reach wireguard-go, which stages them
// until the handshake completes, so the first packet waits one write and
// one handshake and none is lost while the queues hold.

// OnDemand configures on-demand peers (zero After: off).
type OnDemand struct {
	// After is how long a peer's counters stand still before it rests.
	// It rests only once its last handshake is older than WireGuard's
	// Reject-After-Time (or it has none), so the other end holds no
	// session either and must shake hands, which wakes it, to send.
	After time.Duration
	// Grace is how long after the mesh's start peers keep their planned
	// keepalive: a restarted agent shakes hands with every peer at once,
	// so the sessions they still hold with its previous run are replaced
	// instead of timing out. Afterwards a peer that may rest has none.
	Grace time.Duration
	// Awake says which peers new to the mesh start on the device (awake.go):
	// those the previous run had there. The others start resting. Nil:
	// every one (all that a start without a record can assume).
	Awake func(wgtypes.Key) bool
	// Record is where the awake set is kept for the next run ("": nowhere).
	Record string
}

// Bounds of what waits for a wake. A wake is one device write (about a
// millisecond), so a burst of more packets than this for one peer is
// dropped and counted, as a full queue in wireguard-go would be.
const (
	heldPerPeer  = 64
	heldInAll    = 1024
	heldInits    = 64
	initsPerSec  = 200 // initiations read for their key, at most (one X25519 each)
	restCheckMin = time.Second
	restCheckMax = 30 * time.Second
)

// OnDemandStats are the on-demand counters, for metrics.
type OnDemandStats struct {
	Resting       int
	Rests, Wakes  uint64
	WakesByPacket uint64 // woken by an outgoing packet
	WakesByInit   uint64 // woken by the peer's handshake
	HeldDropped   uint64 // packets (and initiations) dropped while their peer woke
}

type onDemand struct {
	cfg    OnDemand
	start  time.Time
	counts *counters // the mesh's

	// Under Mesh.mu (the writer lock):
	resting  map[wgtypes.Key]Peer // the peer as last desired, its keepalive as it will be written
	idle     map[wgtypes.Key]idleMark
	desired  map[wgtypes.Key]Peer // the last Apply's peers that may rest and are awake, and those woken since (nil: no Apply yet)
	fixed    map[wgtypes.Key]bool // the last Apply's peers that may not
	released time.Time            // the last releaseMemory

	table  atomic.Pointer[restingTable]
	reader atomic.Pointer[wgnoise.Responder]
	quiet  atomic.Pointer[map[wgtypes.Key]bool] // Idle's: on the device, unchanged at the last look

	mu      sync.Mutex // the queues below
	held    map[wgtypes.Key][][]byte
	nheld   int
	wanted  map[wgtypes.Key]bool
	inits   []heldInit
	tokens  float64
	tokenAt time.Time
	signal  chan struct{}

	rests, wakes, byPacket, byInit, dropped atomic.Uint64
	nresting                                atomic.Int64

	recordDue chan struct{} // the awake record (awake.go)
	recordMu  sync.Mutex    // one write at a time; holds recorded
	recorded  []string      // the awake set last written
}

type idleMark struct {
	bytes int64     // receive + transmit at the last look
	since time.Time // when they last changed
}

type heldInit struct {
	pub wgtypes.Key
	pkt []byte
	ep  conn.Endpoint
}

// EnableOnDemand turns on-demand peers on, before the first Apply; priv is
// the device's key (SetPrivateKey keeps it current). It starts the waker
// and the rest check, which stop with the device.
func (m *Mesh) EnableOnDemand(cfg OnDemand, priv wgtypes.Key) {
	if cfg.After <= 0 {
		return
	}
	o := &onDemand{cfg: cfg, start: time.Now(), counts: &m.counts, resting: map[wgtypes.Key]Peer{}, idle: map[wgtypes.Key]idleMark{},
		held: map[wgtypes.Key][][]byte{}, wanted: map[wgtypes.Key]bool{}, signal: make(chan struct{}, 1), tokens: initsPerSec,
		recordDue: make(chan struct{}, 1)}
	o.reader.Store(wgnoise.NewResponder(priv))
	m.od = o
	m.dev.gate.hold.Store(&tunHold{o: o})
	m.dev.bind.wakeOnInit.Store(o)
	m.dev.od = o
	go m.waker(o)
	go m.restLoop(o)
	if cfg.Record != "" {
		go m.recordLoop(o)
	}
}

// OnDemandStats reads the on-demand counters (zero when off).
func (m *Mesh) OnDemandStats() OnDemandStats {
	o := m.od
	if o == nil {
		return OnDemandStats{}
	}
	return OnDemandStats{Resting: int(o.nresting.Load()), Rests: o.rests.Load(), Wakes: o.wakes.Load(),
		WakesByPacket: o.byPacket.Load(), WakesByInit: o.byInit.Load(), HeldDropped: o.dropped.Load()}
}

// Resting reports whether pub rests (is off the device while idle).
func (m *Mesh) Resting(pub wgtypes.Key) bool {
	if m.od == nil {
		return false
	}
	return m.od.table.Load().rests(pub)
}

// mayRest: peers that never rest keep their keepalive and the device:
// a node behind NAT (this one or the peer) must keep its mappings open,
// and a Peer object has no agent to wake it.
func mayRest(p Peer) bool { return p.Rest && !p.Roaming && !p.External }

// shape sets, for the peers that may rest, the keepalive they are written
// with (none once the grace is over) and splits off those resting, whose
// kept desired state it updates; a peer new to the mesh rests from the
// start unless cfg.Awake says otherwise. Under m.mu.
func (o *onDemand) shape(desired []Peer, now time.Time) []Peer {
	// Sized for the awake (the resting, thousands, stay out of it).
	out := make([]Peer, 0, max(len(desired)-len(o.resting), 0)+16)
	// Only the awake are kept here: the resting are in o.resting, and at
	// thousands of resting peers a second copy of each was megabytes.
	want := map[wgtypes.Key]Peer{}
	fixed := map[wgtypes.Key]bool{}
	changed, first := false, o.desired == nil
	wasResting, stillResting := len(o.resting), 0
	for _, p := range desired {
		if !mayRest(p) {
			fixed[p.PublicKey] = true
			out = append(out, p)
			continue
		}
		p.Keepalive = o.keepalive(p, now)
		if old, ok := o.resting[p.PublicKey]; ok {
			changed = changed || !samePrefixes(old.AllowedIPs, p.AllowedIPs)
			o.resting[p.PublicKey] = p
			stillResting++
			continue
		}
		if o.startsResting(p.PublicKey) {
			o.resting[p.PublicKey] = p
			changed = true
			continue
		}
		want[p.PublicKey] = p
		out = append(out, p)
	}
	o.fixed = fixed
	if stillResting < wasResting {
		changed = o.forgetGone(desired) || changed
	}
	for k := range o.idle {
		if _, ok := want[k]; !ok {
			delete(o.idle, k)
		}
	}
	o.desired = want
	if changed {
		o.publish()
	} else if first {
		o.changed()
	}
	return out
}

// forgetGone drops the resting peers that desired no longer holds as
// peers that may rest. Under m.mu.
func (o *onDemand) forgetGone(desired []Peer) bool {
	still := make(map[wgtypes.Key]bool, len(desired))
	for _, p := range desired {
		if mayRest(p) {
			still[p.PublicKey] = true
		}
	}
	gone := false
	for k := range o.resting {
		if !still[k] {
			// Gone from the mesh (or, with keys required, without one):
			// its counts and what waited for it go too.
			delete(o.resting, k)
			o.counts.forget(k)
			o.mu.Lock()
			o.nheld -= len(o.held[k])
			delete(o.held, k)
			o.mu.Unlock()
			gone = true
		}
	}
	return gone
}

// startsResting reports whether p, if new to the mesh (on the device at
// the last Apply neither as a peer that may rest nor as one that may not),
// starts resting. Under m.mu.
func (o *onDemand) startsResting(pub wgtypes.Key) bool {
	_, known := o.desired[pub] // a peer then resting is not asked
	return !known && !o.fixed[pub] && o.cfg.Awake != nil && !o.cfg.Awake(pub)
}

// keepalive is the keepalive p is written with.
func (o *onDemand) keepalive(p Peer, now time.Time) time.Duration {
	if mayRest(p) && now.Sub(o.start) >= o.cfg.Grace {
		return 0
	}
	return p.Keepalive
}

// keep updates a resting peer's kept state (a new preshared key). Under m.mu.
func (o *onDemand) keep(p Peer, now time.Time) {
	p.Keepalive = o.keepalive(p, now)
	o.resting[p.PublicKey] = p
}

// RestingPeer is pub, if it rests, as the device would show it: its
// preshared key and endpoint as kept, its counts as carried (no handshake:
// it has no session; no allowed IPs). For status. It reads the kept peer
// under the writer's lock, not the packet paths' table: a key agreed while
// a peer rests updates only the kept peer (the table is rebuilt only when
// the resting set changes). One peer a call, so a status of thousands
// copies none of them twice and a wake waits for one lookup at most.
func (m *Mesh) RestingPeer(pub wgtypes.Key) (wgtypes.Peer, bool) {
	if m.od == nil {
		return wgtypes.Peer{}, false
	}
	m.mu.Lock()
	p, ok := m.od.resting[pub]
	m.mu.Unlock()
	if !ok {
		return wgtypes.Peer{}, false
	}
	rx, tx := m.counts.carriedOf(pub)
	return wgtypes.Peer{PublicKey: pub, PresharedKey: p.PresharedKey, Endpoint: udpAddr(p.Endpoint), ReceiveBytes: rx, TransmitBytes: tx}, true
}

// Idle reports whether pub, on the device, carried nothing between the
// rest check's last two looks (on-demand peers only): its handshake may
// age without anything being wrong, since no traffic needs one.
func (m *Mesh) Idle(pub wgtypes.Key) bool {
	if m.od == nil {
		return false
	}
	q := m.od.quiet.Load()
	return q != nil && (*q)[pub]
}

// idleNow returns the device's peers that have rested long enough: their
// counters stood still for After and their last handshake is older than
// Reject-After-Time. Under m.mu.
func (o *onDemand) idleNow(actual []wgtypes.Peer, now time.Time) []wgtypes.Peer {
	var out []wgtypes.Peer
	quiet := map[wgtypes.Key]bool{}
	defer o.quiet.Store(&quiet)
	for _, a := range actual {
		if _, ok := o.desired[a.PublicKey]; !ok {
			continue
		}
		b := a.ReceiveBytes + a.TransmitBytes
		mark, seen := o.idle[a.PublicKey]
		if !seen || mark.bytes != b {
			o.idle[a.PublicKey] = idleMark{bytes: b, since: now}
			continue
		}
		quiet[a.PublicKey] = true
		if now.Sub(mark.since) >= o.cfg.After && (a.LastHandshakeTime.IsZero() || now.Sub(a.LastHandshakeTime) >= rejectAfter) {
			out = append(out, a)
		}
	}
	return out
}

// restLoop rests idle peers, every quarter of After (1 s to 30 s).
func (m *Mesh) restLoop(o *onDemand) {
	every := min(max(o.cfg.After/4, restCheckMin), restCheckMax)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.dev.Done():
			return
		case <-t.C:
		}
		if err := m.restIdle(o, time.Now()); err != nil {
			m.dev.logger.Warn("cannot rest idle peers", "err", err)
		}
	}
}

// restIdle takes the idle peers off the device (their counts carried).
func (m *Mesh) restIdle(o *onDemand, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.desired == nil || m.dev.released.Load() {
		return nil // no Apply yet, or a successor runs the data plane (the UAPI socket is its)
	}
	actual, err := m.Peers()
	if err != nil {
		return err
	}
	idle := o.idleNow(actual, now)
	if len(idle) == 0 {
		return nil
	}
	cfgs := make([]wgtypes.PeerConfig, len(idle))
	for i, a := range idle {
		cfgs[i] = wgtypes.PeerConfig{PublicKey: a.PublicKey, Remove: true}
	}
	if err := m.wg.ConfigureDevice(m.dev.name, wgtypes.Config{Peers: cfgs}); err != nil {
		return err
	}
	m.writes.Add(1)
	m.peerWrites[WriteRest].Add(uint64(len(cfgs)))
	rested := make([]wgtypes.Key, len(idle))
	for i, a := range idle {
		m.counts.carry(a)
		p := o.desired[a.PublicKey]
		p.PresharedKey = a.PresharedKey // the device's is the newest (WritePeerKey writes between Applies)
		o.resting[a.PublicKey] = p
		delete(o.desired, a.PublicKey)
		delete(o.idle, a.PublicKey)
		rested[i] = a.PublicKey
	}
	o.rests.Add(uint64(len(idle)))
	o.publishChanged(nil, rested)
	if len(idle) >= releaseAfterRests && now.Sub(o.released) >= releaseEvery {
		o.released = now
		go releaseMemory()
	}
	return nil
}

// After a rest of many peers, what wireguard-go held for them (two
// 1024-slot queues each, freed only after their finalizers ran, so two
// collections later) is handed back to the kernel at once rather than by
// the runtime's slow background scavenger: resting is for memory.
const (
	releaseAfterRests = 64
	releaseEvery      = time.Minute
)

func releaseMemory() {
	debug.FreeOSMemory() // runs the queues' finalizers
	time.Sleep(time.Second)
	debug.FreeOSMemory() // frees them
}
