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
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
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

	wake    chan struct{}
	run     chan struct{} // pqMaxRunning slots
	changed chan struct{} // a key was dropped: the loop reconciles (Changed)

	// alive reports whether the named node's agent answers gossip (nil:
	// nobody is known to be alive).
	alive func(name string) bool

	replays pq.Replays

	mu        sync.Mutex
	self      *pq.Identity
	selfSince time.Time
	pairs     map[wgtypes.Key]*pair
	sources   map[netip.Addr]bool // the pairs' exchange addresses
	refusedAt time.Time           // the last unauthenticated attempt logged

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
	busy     chan struct{} // holds one token while an exchange with the peer runs
	starting bool          // this node is initiating
	down     bool          // reported down (required mode)
}

// Device is what the key manager reads of the device.
type Device interface {
	Dormant() map[wgtypes.Key]bool
	LastHandshake(pub wgtypes.Key) (time.Time, bool)
}

// Writer writes one pair's key (as keys now has it) to the device; fresh
// re-creates the peer so it shakes hands under it now. It reports whether
// it wrote. The agent's loop, the device's one writer, does it.
type Writer func(pub wgtypes.Key, fresh bool) (bool, error)

// Config is what a Manager is built with.
type Config struct {
	Mode     string        // Off, Preferred or Required
	Rotation time.Duration // how often a pair agrees a new key
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

// Loop starts the exchanges that are due until ctx ends.
func (k *Manager) Loop(ctx context.Context) {
	if k.mode == Off {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.wake:
		}
		next := k.startDue(ctx)
		t.Reset(time.Until(next))
	}
}

// startDue starts every due exchange there is a slot for, and says when to look again.
func (k *Manager) startDue(ctx context.Context) time.Time {
	dormant := k.dev.Dormant()
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	next := now.Add(time.Second)
	for pub, p := range k.pairs {
		if p.next.After(now) {
			next = minTime(next, p.next)
			continue
		}
		if dormant[pub] && !k.mustRetry(p) {
			// The peer does not answer WireGuard (a node that is down):
			// no exchange until it does. When it comes back it calls
			// (a restarted agent starts every pair's exchange) or its
			// handshake wakes the peer and the exchange follows.
			p.next = now.Add(5 * time.Second)
			continue
		}
		k.reportDown(pub, p, now)
		select {
		case k.run <- struct{}{}:
		default:
			return now.Add(50 * time.Millisecond) // all slots busy
		}
		select {
		case p.busy <- struct{}{}:
		default: // answering the peer right now
			<-k.run
			p.next = now.Add(time.Second)
			continue
		}
		p.next = now.Add(pq.Timeout + time.Second) // until the result says otherwise
		go k.initiate(ctx, pub, p.addr)
	}
	return next
}

// mustRetry reports whether a pair is exchanged with even while its peer
// rests: this end does not know that both ends hold the same key (it has
// none from this run, or its last exchange failed) and the peer's agent is
// alive (it answers gossip). Such a pair may be resting only because the
// keys disagree (WireGuard fails the handshakes, so both ends rest the
// peer), and only an exchange can end that; a node that is down does not
// answer gossip and is not called. Called with k.mu held.
func (k *Manager) mustRetry(p *pair) bool {
	return (!p.has || p.fails > 0) && k.alive != nil && k.alive(p.name)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// reportDown tells once that a pair has had no key for pqDownAfter in
// required mode: it carries no traffic.
func (k *Manager) reportDown(pub wgtypes.Key, p *pair, now time.Time) {
	if k.mode != Required || p.has || p.down || now.Sub(p.added) < pqDownAfter {
		return
	}
	p.down = true
	msg := fmt.Sprintf("no post-quantum key agreed with %s for %v (--pq=required): the pair carries no traffic; last error: %s", p.name, now.Sub(p.added).Round(time.Second), p.lastErr)
	k.log.Error("pair down: no post-quantum key", "peer", p.name, "last_error", p.lastErr)
	if k.event != nil {
		go k.event(p.name, "WeftPQKeyMissing", msg)
	}
}

// initiate runs one exchange as initiator and installs its key.
func (k *Manager) initiate(ctx context.Context, pub wgtypes.Key, addr netip.AddrPort) {
	defer func() { <-k.run }()
	k.mu.Lock()
	self := k.self
	p := k.pairs[pub]
	k.mu.Unlock()
	release := func() {
		if p != nil {
			k.mu.Lock()
			p.starting = false
			k.mu.Unlock()
			<-p.busy
		}
	}
	defer release()
	if p == nil {
		return
	}
	psk, err := k.exchange(ctx, self, pub, addr)
	if err == nil {
		err = k.install(pub, self, psk, true)
	}
	k.result(pub, err, "initiator")
}

func (k *Manager) exchange(ctx context.Context, self *pq.Identity, pub wgtypes.Key, addr netip.AddrPort) (wgtypes.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, pq.Timeout)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, dialTimeout)
	c, err := k.dial(dctx, addr)
	dcancel()
	if err != nil {
		return wgtypes.Key{}, err
	}
	defer c.Close()
	// Connected: from now on a crossed exchange from the peer is told
	// "busy" if this end wins (before, it waits for the dial to fail: a
	// peer behind NAT cannot be called, but it can call).
	k.mu.Lock()
	if p := k.pairs[pub]; p != nil {
		p.starting = true
	}
	k.mu.Unlock()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl) // a failure shows as the exchange's own error
	return pq.Initiate(c, self, pub)
}

// install records an agreed key and writes it to the device (fresh: re-create
// the peer so a handshake with it happens now). A key agreed under a node key
// since replaced is dropped.
func (k *Manager) install(pub wgtypes.Key, self *pq.Identity, psk wgtypes.Key, fresh bool) error {
	k.mu.Lock()
	p, ok := k.pairs[pub]
	if !ok || k.self != self {
		k.mu.Unlock()
		return errors.New("pair changed during the exchange")
	}
	p.psk, p.has, p.agreed = psk, true, time.Now()
	k.mu.Unlock()
	if !fresh {
		_, err := k.write(pub, false)
		return err
	}
	// Re-create the peer so it shakes hands under the new key now, and
	// check that it did: the other end drops an initiation that follows
	// our previous one within wireguard-go's timestamp granularity and
	// flood limit (about 20 ms), and it takes one even under the wrong
	// preshared key (IKpsk2 mixes the key in only at the response). An
	// initiation the old peer sent just before (a restarted agent's, or
	// one a reconcile's keepalive started) would otherwise make the new
	// one wait for WireGuard's 5 s retry. The old session carries traffic
	// meanwhile.
	start := time.Now()
	for range 3 {
		wrote, err := k.write(pub, true)
		if err != nil || !wrote {
			return err
		}
		time.Sleep(handshakeCheck)
		if t, ok := k.dev.LastHandshake(pub); ok && t.After(start) {
			return nil
		}
	}
	return nil
}

// handshakeCheck is how long after re-creating a peer its handshake is
// looked for: many round trips, and more than the ~20 ms within which a
// second initiation is refused.
const handshakeCheck = 150 * time.Millisecond

// result schedules the pair's next exchange after one ended.
func (k *Manager) result(pub wgtypes.Key, err error, role string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.pairs[pub]
	if !ok {
		return
	}
	now := time.Now()
	if err == nil {
		p.fails, p.lastErr, p.down = 0, "", false
		p.next = now.Add(k.interval(pub))
		k.rotations.WithLabelValues(role).Inc()
		k.log.Debug("preshared key agreed", "peer", p.name, "role", role)
		return
	}
	reason := pq.Reason(err)
	k.failures.WithLabelValues(reason).Inc()
	p.fails++
	p.lastErr = err.Error()
	// Up to the rotation interval: a peer that comes back (restarted) calls
	// every peer at once itself, so waiting long costs nothing, and a
	// cluster with many unreachable peers is not dialled every 30 s.
	// A peer whose agent answers gossip is retried at least every
	// pqMaxBackoff: it is there, and until the keys agree the pair may be
	// cut (see mustRetry).
	limit := max(pqMaxBackoff, k.rotation)
	if k.alive != nil && k.alive(p.name) {
		limit = pqMaxBackoff
	}
	backoff := min(time.Duration(1<<min(p.fails-1, 10))*time.Second, limit)
	switch {
	case errors.Is(err, pq.ErrBusy):
		backoff = 2 * time.Second // the peer's own exchange is running
	case errors.Is(err, pq.ErrRefused) && now.Sub(k.selfSince) < 30*time.Second:
		// This node's key is new and the peer has not learned it yet:
		// the exchange that succeeds once it has re-creates the peer,
		// which ends the pause of a rotation, so try often.
		backoff = 100 * time.Millisecond
	}
	if role == "initiator" {
		p.next = now.Add(backoff)
	}
	level := slog.LevelDebug
	if reason == "auth" || p.fails == 3 {
		level = slog.LevelWarn
	}
	k.log.Log(context.Background(), level, "key exchange failed", "peer", p.name, "role", role, "reason", reason, "err", err, "failures", p.fails)
	// An agent that does not answer on the port at all (an older weft, or
	// --pq=off) has no key: in preferred mode the pair drops its own
	// rather than keep a key the other end lost.
	if k.mode == Preferred && p.has && errors.Is(err, syscall.ECONNREFUSED) {
		p.has, p.psk = false, wgtypes.Key{}
		k.log.Warn("peer does not answer key exchanges: running the pair without a preshared key (--pq=preferred)", "peer", p.name)
		select { // the loop's next reconcile writes the pair without it
		case k.changed <- struct{}{}:
		default:
		}
	}
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
