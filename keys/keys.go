// Package keys agrees and rotates each pair's post-quantum preshared key
// (the exchange itself is package pq) and schedules it: who calls whom,
// when, with what backoff, which pairs rest. It reads the device through
// Device and never writes it: the agent's loop plans the keys with
// everything else (Keys, plan.Keys.Fill) and writes a newly agreed one when
// asked (Writer). It imports no netlink, wgctrl or nftables.
package keys

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
	"github.com/weftnet/weft/pq"
)

// PQ modes (--pq).
const (
	Off       = "off"       // no exchanges; no preshared keys
	Preferred = "preferred" // a pair without an agreed key runs without one
	Required  = "required"  // a pair without an agreed key stays down
)

const (
	// pqMaxRunning bounds the exchanges this node initiates at once.
	pqMaxRunning = 8
	// pqDownAfter: a pair without a key this long (required mode) is
	// reported down once.
	pqDownAfter  = 10 * time.Second
	pqMaxBackoff = 30 * time.Second
	// dialTimeout bounds the connect: nodes share a network, and a peer
	// that cannot be reached (behind NAT) should not hold the pair long.
	dialTimeout = 2 * time.Second
)

// Manager agrees and rotates a post-quantum preshared key with every node
// peer (package pq). The end with the lower public key rotates every
// interval; the other end takes over if that does not happen within a
// quarter more (a node behind NAT cannot be called). It never writes the
// device: the loop plans the keys (Keys) with everything else, and writes
// a newly agreed one at once when asked (Config.Write).
type Manager struct {
	mode     string
	rotation time.Duration
	port     int
	dev      Device
	write    Writer
	log      *slog.Logger
	event    func(node, reason, msg string) // nil outside Kubernetes
	dial     func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)

	wake      chan struct{}
	run       chan struct{} // pqMaxRunning slots
	changed   chan struct{} // a key was dropped: the loop reconciles (Changed)
	store     string        // Config.Store
	dirty     chan struct{} // the keys on disk are out of date (store.go)
	saveAfter time.Duration // saveAfter, but for tests

	// alive reports whether the named node's agent answers gossip (nil:
	// nobody is known to be alive).
	alive func(name string) bool

	replays pq.Replays

	wokeMu sync.Mutex
	woken  map[wgtypes.Key]bool // Woke's, until the loop's next look
	joined map[string]bool      // Joined's, likewise

	mu        sync.Mutex
	self      *pq.Identity
	selfSince time.Time
	pairs     map[wgtypes.Key]*pair
	sources   map[netip.Addr]bool // the pairs' exchange addresses
	refusedAt time.Time           // the last unauthenticated attempt logged
	held      bool                // no exchanges: a handover is under way (Hold)
	looking   time.Time           // when the loop looks next (startDue's answer)

	rotations *prometheus.CounterVec // by role
	failures  *prometheus.CounterVec // by reason
}

type pair struct {
	name     string
	addr     netip.AddrPort // the peer's exchange address
	added    time.Time
	psk      wgtypes.Key
	has      bool
	agreed   time.Time
	next     time.Time
	fails    int
	lastErr  string
	refused  time.Time     // the first of the refusals in a row (the peer's port is closed)
	busy     chan struct{} // holds one token while an exchange with the peer runs
	starting bool          // this node is initiating
	down     bool          // reported down (required mode)
	resting  bool          // waits for its peer to wake (startDue; Woke ends the wait)
}

// Device is what the key manager reads of the device.
type Device interface {
	Dormant(pub wgtypes.Key) bool
	LastHandshake(pub wgtypes.Key) (time.Time, bool)
	// Handshake starts a handshake with pub now, under the key last
	// written, unless one was sent within WireGuard's 5-s limit.
	Handshake(pub wgtypes.Key)
}

// Writer writes one pair's key (as keys now has it) to the device; fresh
// re-creates the peer so it shakes hands under it now. It reports whether
// it wrote. The agent's loop, the device's one writer, does it.
type Writer func(pub wgtypes.Key, fresh bool) (bool, error)

// Config is what a Manager is built with.
type Config struct {
	Mode     string        // Off, Preferred or Required
	Rotation time.Duration // how often a pair agrees a new key
	Store    string        // the file the keys are kept in for a restart (StoreFile); "": none
	Port     int           // the exchange port, the same on every node
	Key      wgtypes.Key   // this node's WireGuard private key
	Device   Device
	Write    Writer
	Metrics  *prometheus.Registry
	Log      *slog.Logger
	// Event reports a pair that is down to the cluster (nil outside
	// Kubernetes): node, reason, message.
	Event func(node, reason, msg string)
	// Alive reports whether the named node's agent answers gossip (nil:
	// nobody is known to be alive).
	Alive func(name string) bool
}

// New returns a Manager that exchanges nothing until Loop and Serve run.
func New(c Config) (*Manager, error) {
	self, err := pq.NewIdentity(c.Key)
	if err != nil {
		return nil, err
	}
	k := &Manager{
		mode: c.Mode, rotation: c.Rotation, port: c.Port, dev: c.Device, write: c.Write, log: c.Log, event: c.Event, alive: c.Alive,
		wake: make(chan struct{}, 1), run: make(chan struct{}, pqMaxRunning), changed: make(chan struct{}, 1),
		store: c.Store, dirty: make(chan struct{}, 1), saveAfter: saveAfter,
		self: self, selfSince: time.Now(), pairs: map[wgtypes.Key]*pair{}, sources: map[netip.Addr]bool{},
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_pq_rotations_total", Help: "Post-quantum preshared keys agreed with a peer, by this node's role (initiator, responder).",
		}, []string{"role"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_pq_failures_total", Help: "Key exchanges that failed, by reason (auth: the other end did not hold the key it claimed; replay: a first message seen before or stale; refused, busy, unknown-peer, protocol, io).",
		}, []string{"reason"}),
	}
	k.dial = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.String())
	}
	for _, r := range []string{"initiator", "responder"} {
		k.rotations.WithLabelValues(r)
	}
	for _, r := range []string{"auth", "replay", "refused", "busy", "unknown-peer", "protocol", "io"} {
		k.failures.WithLabelValues(r)
	}
	c.Metrics.MustRegister(k.rotations, k.failures, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_node_key_age_seconds", Help: "Age of this node's WireGuard key (since the agent started or last rotated it).",
	}, func() float64 {
		k.mu.Lock()
		defer k.mu.Unlock()
		return time.Since(k.selfSince).Seconds()
	}))
	return k, nil
}

// Keys is a snapshot of the agreed keys for the plan: of the pairs named,
// or of all when none is (nil with --pq=off).
func (k *Manager) Keys(only ...wgtypes.Key) *plan.Keys {
	if k.mode == Off {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	out := &plan.Keys{PSK: map[wgtypes.Key]wgtypes.Key{}, Require: k.mode == Required}
	add := func(pub wgtypes.Key, p *pair) {
		if p != nil && p.has {
			out.PSK[pub] = p.psk
		}
	}
	if len(only) > 0 {
		for _, pub := range only {
			add(pub, k.pairs[pub])
		}
		return out
	}
	for pub, p := range k.pairs {
		add(pub, p)
	}
	return out
}

// Update follows the accepted peers: a new one is due for an exchange now,
// a gone one is forgotten.
func (k *Manager) Update(peers []peer.NodeInfo) {
	if k.mode == Off {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	seen := make(map[wgtypes.Key]bool, len(peers))
	added := false
	for _, n := range peers {
		seen[n.PublicKey] = true
		addr := netip.AddrPortFrom(n.Endpoint.Addr(), uint16(k.port))
		p, ok := k.pairs[n.PublicKey]
		if !ok {
			p = &pair{added: now, next: now, busy: make(chan struct{}, 1)}
			k.pairs[n.PublicKey] = p
			added = true
		}
		p.name, p.addr = n.Name, addr
	}
	for pub := range k.pairs {
		if !seen[pub] {
			delete(k.pairs, pub)
		}
	}
	clear(k.sources)
	for _, p := range k.pairs {
		k.sources[p.addr.Addr().Unmap()] = true
	}
	if added {
		k.poke()
	}
}

// Changed delivers when a pair dropped its key (the peer stopped answering
// exchanges, --pq=preferred): the device should be reconciled.
func (k *Manager) Changed() <-chan struct{} { return k.changed }

func (k *Manager) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// lower reports whether this node has the lower key of the pair (it rotates).
func (k *Manager) lower(pub wgtypes.Key) bool {
	own := k.self.PublicKey()
	return bytes.Compare(own[:], pub[:]) < 0
}

// interval is when this end next rotates after an agreement.
func (k *Manager) interval(pub wgtypes.Key) time.Duration {
	d := k.rotation
	if !k.lower(pub) {
		d += d / 4
	}
	return d - time.Duration(rand.Int64N(int64(d/10)+1)) // spread the pairs
}

// Rekeyed starts over with a new node key: every pair's key was bound to
// the old one.
func (k *Manager) Rekeyed(priv wgtypes.Key) error {
	self, err := pq.NewIdentity(priv)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.self, k.selfSince = self, time.Now()
	now := time.Now()
	for _, p := range k.pairs {
		p.has, p.psk, p.next, p.fails, p.added, p.down = false, wgtypes.Key{}, now, 0, now, false
	}
	k.poke()
	k.changedKeys()
	return nil
}

// PairStatus is what /v1/peers shows of a pair's key.
type PairStatus struct {
	Has    bool
	Age    time.Duration
	Failed string
}

// Status is the pair's key as this end holds it.
func (k *Manager) Status(pub wgtypes.Key) PairStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.pairs[pub]
	if !ok {
		return PairStatus{}
	}
	s := PairStatus{Has: p.has, Failed: p.lastErr}
	if p.has {
		s.Age = time.Since(p.agreed)
	}
	return s
}

// NodeKeyAge is how long this node has had its WireGuard key.
func (k *Manager) NodeKeyAge() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return time.Since(k.selfSince)
}

// Held is one pair's agreed key as a successor takes it over (package
// handover): the key, when it was agreed, and when this end next rotates.
type Held struct {
	Peer   string    `json:"peer"` // public key, base64
	PSK    string    `json:"psk"`  // base64
	Agreed time.Time `json:"agreed"`
	Next   time.Time `json:"next"`
}

// Export is every pair's agreed key and this node key's age.
func (k *Manager) Export() (held []Held, nodeKeySince time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for pub, p := range k.pairs {
		if p.has {
			held = append(held, Held{Peer: pub.String(), PSK: p.psk.String(), Agreed: p.agreed, Next: p.next})
		}
	}
	return held, k.selfSince
}

// Restore takes over a predecessor's agreed keys, before the first Update:
// the pairs go on with them (and their rotation schedule) instead of
// agreeing new ones, so the device's sessions keep their keys. Entries
// that do not parse are dropped; their pairs agree anew.
func (k *Manager) Restore(held []Held, nodeKeySince time.Time) {
	if k.mode == Off {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !nodeKeySince.IsZero() && nodeKeySince.Before(k.selfSince) {
		k.selfSince = nodeKeySince
	}
	for _, h := range held {
		pub, err1 := wgtypes.ParseKey(h.Peer)
		psk, err2 := wgtypes.ParseKey(h.PSK)
		if err1 != nil || err2 != nil {
			continue
		}
		k.pairs[pub] = &pair{added: h.Agreed, psk: psk, has: true, agreed: h.Agreed, next: h.Next, busy: make(chan struct{}, 1)}
	}
	k.poke() // a running loop may sleep past their times
}
