package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pq"
)

// The initiating side of the pairs' exchanges: which are due, calling the
// peer, installing the key, and when to try again.

// Loop starts the exchanges that are due until ctx ends, and keeps the
// keys on disk (Config.Store).
func (k *Manager) Loop(ctx context.Context) {
	if k.mode == Off {
		return
	}
	persisted := make(chan struct{})
	go func() {
		defer close(persisted)
		k.persist(ctx)
	}()
	defer func() { <-persisted }() // the last keys are on disk when Loop returns
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

// lookEvery is the longest the loop sleeps: every pair's next time is
// known (a failed exchange that is due sooner pokes the loop), so a pass
// is needed only when one falls due. At thousands of pairs a pass every
// second was the idle agent's largest cost after the runtime's own.
const lookEvery = 30 * time.Second

// restingLook is how long a pair whose peer rests (mesh: dormant, or off
// the device) waits before it is looked at again. A wake of the peer calls
// Woke, which brings its turn forward, so this is only the fallback: at
// 5000 resting pairs a look every 5 s was the idle agent's largest cost.
const restingLook = lookEvery

// wokeSettle is how long after its peer's wake a pair's exchange waits.
// The packets that woke the peer wait in it for the handshake the wake
// starts, and an exchange that agrees a key re-creates the peer (install,
// fresh), which drops what waits there: started at the wake itself, the
// exchange lost 126 of bench-scale's 300 first packets. A handshake takes
// a few round trips; 2 s is also sooner than the 5-s look before Woke
// came, on average. Plus up to a second at random: traffic that wakes a
// peer is often periodic (a probe, a poll), and an exchange at a fixed
// time after the wake falls on the same phase as that traffic's later
// packets, whose one in flight the re-creation drops (at exactly 2 s,
// bench-scale lost 22 of 8175 pings to awake peers, against 0-8 before).
const wokeSettle = 2 * time.Second

// startDue starts every due exchange there is a slot for, and says when to look again.
func (k *Manager) startDue(ctx context.Context) (next time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	defer func() { k.looking = next }()
	now := time.Now()
	if k.held {
		return now.Add(time.Second) // a handover is under way (Hold)
	}
	next = now.Add(lookEvery)
	woken, joined := k.takeWoken()
	for pub := range woken {
		if p := k.pairs[pub]; p != nil && p.resting {
			p.next, p.resting = now.Add(wokeSettle+rand.N(time.Second)), false
		}
	}
	for pub, p := range k.pairs {
		if p.resting && joined[p.name] {
			p.next, p.resting = now, false // alive now: mustRetry may hold
		}
		if p.next.After(now) {
			next = minTime(next, p.next)
			continue
		}
		if k.dev.Dormant(pub) && !k.mustRetry(p) {
			// The peer does not answer WireGuard (a node that is down):
			// no exchange until it does. When it comes back it calls
			// (a restarted agent starts every pair's exchange) or its
			// handshake wakes the peer (Woke) and the exchange follows.
			p.next, p.resting = now.Add(restingLook), true
			next = minTime(next, p.next)
			continue
		}
		p.resting = false
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
			next = minTime(next, p.next)
			continue
		}
		p.next = now.Add(pq.Timeout + time.Second) // until the result says otherwise
		next = minTime(next, p.next)
		go k.initiate(ctx, pub, p.addr)
	}
	return next
}

// Woke says pub's peer woke (it was dormant or resting, and is on the device
// with its keepalive again): if its pair waits for that, the loop looks at
// it wokeSettle (and up to 1 s) later. It takes no lock the device's writer
// may wait for, so the device may call it while it writes.
func (k *Manager) Woke(pub wgtypes.Key) {
	k.wokeMu.Lock()
	if k.woken == nil {
		k.woken = map[wgtypes.Key]bool{}
	}
	k.woken[pub] = true
	k.wokeMu.Unlock()
	k.poke()
}

// Joined says the named node's agent joined gossip (is alive now): a pair
// that waits for its resting peer is looked at now, for mustRetry. Like
// Woke, it takes no lock the caller may wait for.
func (k *Manager) Joined(name string) {
	k.wokeMu.Lock()
	if k.joined == nil {
		k.joined = map[string]bool{}
	}
	k.joined[name] = true
	k.wokeMu.Unlock()
	k.poke()
}

// takeWoken returns the peers woken and the nodes joined since it was last
// called.
func (k *Manager) takeWoken() (map[wgtypes.Key]bool, map[string]bool) {
	k.wokeMu.Lock()
	defer k.wokeMu.Unlock()
	w, j := k.woken, k.joined
	k.woken, k.joined = nil, nil
	return w, j
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

// refusedDropAfter is how long a peer's port must refuse, in a row, before
// the pair drops its key (preferred mode): longer than an agent's restart.
var refusedDropAfter = 10 * time.Second

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
		p.fails, p.lastErr, p.down, p.refused = 0, "", false, time.Time{}
		p.next = now.Add(k.interval(pub))
		if p.next.Before(k.looking) {
			k.poke() // the loop sleeps past it (it waited out the exchange's timeout)
		}
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
		if p.next.Before(k.looking) {
			k.poke() // the loop sleeps past the retry
		}
	}
	level := slog.LevelDebug
	if reason == "auth" || p.fails == 3 {
		level = slog.LevelWarn
	}
	k.log.Log(context.Background(), level, "key exchange failed", "peer", p.name, "role", role, "reason", reason, "err", err, "failures", p.fails)
	// An agent that does not answer on the port at all (an older weft, or
	// --pq=off) has no key: in preferred mode the pair drops its own
	// rather than keep a key the other end lost. Not at the first refusal:
	// an agent that is restarting (a crash, a container restart) refuses
	// too, for a second or two, and comes back with the key it kept
	// (store.go); dropping ours then would fail its first handshakes.
	refused := errors.Is(err, syscall.ECONNREFUSED)
	switch {
	case !refused:
		p.refused = time.Time{} // in a row only
	case p.refused.IsZero():
		p.refused = now
	}
	if k.mode == Preferred && p.has && refused && now.Sub(p.refused) >= refusedDropAfter {
		p.has, p.psk = false, wgtypes.Key{}
		k.changedKeys()
		k.log.Warn("peer does not answer key exchanges: running the pair without a preshared key (--pq=preferred)", "peer", p.name)
		select { // the loop's next reconcile writes the pair without it
		case k.changed <- struct{}{}:
		default:
		}
	}
}
