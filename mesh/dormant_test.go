package mesh

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestDormancy: a peer that never answers loses its keepalive after
// NeverAnswered, one that answered once after DormantAfter without a
// handshake (one write, then none); a handshake wakes it, a peer that
// answers keeps it, and one that may not rest (this node behind NAT) keeps
// it whatever happens.
func TestDormancy(t *testing.T) {
	key := func() wgtypes.Key { k, _ := wgtypes.GeneratePrivateKey(); return k.PublicKey() }
	dead, live, nat := key(), key(), key()
	desired := []Peer{
		{Name: "dead", PublicKey: dead, Keepalive: 25 * time.Second, Rest: true},
		{Name: "live", PublicKey: live, Keepalive: 25 * time.Second, Rest: true},
		{Name: "nat", PublicKey: nat, Keepalive: 25 * time.Second},
	}
	t0 := time.Unix(1_000_000, 0)
	device := func(now time.Time, deadHandshake time.Time, ka map[wgtypes.Key]time.Duration) []wgtypes.Peer {
		return []wgtypes.Peer{
			{PublicKey: dead, LastHandshakeTime: deadHandshake, PersistentKeepaliveInterval: ka[dead]},
			{PublicKey: live, LastHandshakeTime: now.Add(-time.Minute), PersistentKeepaliveInterval: ka[live]},
			{PublicKey: nat, PersistentKeepaliveInterval: ka[nat]},
		}
	}
	on := map[wgtypes.Key]time.Duration{dead: 25 * time.Second, live: 25 * time.Second, nat: 25 * time.Second}
	var d dormancy
	apply := func(now time.Time, deadHandshake time.Time) []wgtypes.PeerConfig {
		t.Helper()
		cfgs, _ := DiffPeers(d.rest(desired, device(now, deadHandshake, on), now), device(now, deadHandshake, on))
		for _, c := range cfgs {
			on[c.PublicKey] = *c.PersistentKeepaliveInterval
		}
		return cfgs
	}
	if cfgs := apply(t0, time.Time{}); len(cfgs) != 0 {
		t.Fatalf("first sight wrote %d peers", len(cfgs))
	}
	if cfgs := apply(t0.Add(NeverAnswered-time.Second), time.Time{}); len(cfgs) != 0 {
		t.Fatalf("before NeverAnswered wrote %d peers", len(cfgs))
	}
	cfgs := apply(t0.Add(NeverAnswered), time.Time{})
	if len(cfgs) != 1 || cfgs[0].PublicKey != dead || *cfgs[0].PersistentKeepaliveInterval != 0 {
		t.Fatalf("at NeverAnswered: %+v, want the dead peer's keepalive off", cfgs)
	}
	if f := d.fallen(); len(f) != 1 || !f[dead] {
		t.Fatalf("fallen = %+v, want the dead peer (removed before it is written again)", f)
	}
	if !d.isDormant(dead) || d.isDormant(live) || d.isDormant(nat) || d.count() != 1 {
		t.Fatalf("dormant: dead %v live %v nat %v", d.isDormant(dead), d.isDormant(live), d.isDormant(nat))
	}
	if cfgs := apply(t0.Add(2*DormantAfter), time.Time{}); len(cfgs) != 0 || len(d.fallen()) != 0 {
		t.Fatalf("a dormant peer was written again: %+v", cfgs)
	}
	woke := t0.Add(2*DormantAfter + time.Second)
	cfgs = apply(woke.Add(time.Second), woke)
	if len(cfgs) != 1 || cfgs[0].PublicKey != dead || *cfgs[0].PersistentKeepaliveInterval != 25*time.Second {
		t.Fatalf("after a handshake: %+v, want the keepalive back on", cfgs)
	}
	if d.isDormant(dead) {
		t.Fatal("still dormant after a handshake")
	}
	// Having answered, it rests again only after DormantAfter without a handshake.
	if cfgs := apply(woke.Add(DormantAfter), woke); len(cfgs) != 0 {
		t.Fatalf("a peer that answered %v ago was written: %+v", DormantAfter, cfgs)
	}
	if cfgs := apply(woke.Add(DormantAfter+time.Second), woke); len(cfgs) != 1 || *cfgs[0].PersistentKeepaliveInterval != 0 {
		t.Fatalf("after DormantAfter without a handshake: %+v, want the keepalive off", cfgs)
	}
	// Gone from the desired peers: forgotten.
	desired = desired[1:]
	d.rest(desired, device(woke, woke, on), woke)
	if _, ok := d.on[dead]; ok {
		t.Fatal("a removed peer is remembered")
	}
}

// TestPassivePeerStartsDormant: a new passive peer is created with its
// keepalive off and no later write is due until it has shaken hands; then
// one write turns the keepalive on.
func TestPassivePeerStartsDormant(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	pub := k.PublicKey()
	desired := []Peer{{Name: "p", PublicKey: pub, Keepalive: 25 * time.Second, Rest: true, Passive: true}}
	var d dormancy
	t0 := time.Unix(1_000_000, 0)
	// In the agent's first minute (a restart) the peer is deferred instead:
	// created without keepalive, turned on at the next Apply.
	if cfgs, deferred := DiffPeers(d.rest(desired, nil, t0), nil); len(cfgs) != 1 || deferred != 1 || d.isDormant(pub) {
		t.Fatalf("at start: %+v (deferred %d), want one deferred peer", cfgs, deferred)
	}
	t0 = t0.Add(startGrace)
	cfgs, deferred := DiffPeers(d.rest(desired, nil, t0), nil)
	if len(cfgs) != 1 || *cfgs[0].PersistentKeepaliveInterval != 0 || deferred != 0 {
		t.Fatalf("created: %+v (deferred %d), want one peer without keepalive and nothing deferred", cfgs, deferred)
	}
	dev := []wgtypes.Peer{{PublicKey: pub}}
	if cfgs, _ := DiffPeers(d.rest(desired, dev, t0.Add(time.Second)), dev); len(cfgs) != 0 {
		t.Fatalf("before any handshake: %+v, want no write", cfgs)
	}
	dev[0].LastHandshakeTime = t0.Add(2 * time.Second)
	cfgs, _ = DiffPeers(d.rest(desired, dev, t0.Add(3*time.Second)), dev)
	if len(cfgs) != 1 || *cfgs[0].PersistentKeepaliveInterval != 25*time.Second {
		t.Fatalf("after the handshake: %+v, want the keepalive on", cfgs)
	}
}

// TestLivePeerDoesNotFallAsleep: a peer whose agent answers gossip keeps
// its keepalive however long WireGuard goes unanswered (a blocked port
// heals by itself, and its handshake age shows the fault); a new passive
// live peer still starts resting until the other end's handshake.
func TestLivePeerDoesNotFallAsleep(t *testing.T) {
	key := func() wgtypes.Key { k, _ := wgtypes.GeneratePrivateKey(); return k.PublicKey() }
	blocked, passive := key(), key()
	t0 := time.Unix(1_000_000, 0)
	var d dormancy
	desired := []Peer{{Name: "blocked", PublicKey: blocked, Keepalive: 25 * time.Second, Rest: true, Live: true}}
	last := t0.Add(-time.Minute)
	device := []wgtypes.Peer{{PublicKey: blocked, LastHandshakeTime: last, PersistentKeepaliveInterval: 25 * time.Second}}
	for _, at := range []time.Duration{0, NeverAnswered, DormantAfter, 2 * DormantAfter, time.Hour} {
		if out := d.rest(desired, device, t0.Add(at)); out[0].Keepalive == 0 || d.isDormant(blocked) {
			t.Fatalf("%v after its last handshake: the live peer rests", at+time.Minute)
		}
	}
	// The same peer not live falls asleep at once (DormantAfter has passed).
	desired[0].Live = false
	if out := d.rest(desired, device, t0.Add(time.Hour+time.Second)); out[0].Keepalive != 0 {
		t.Fatal("the same peer, not live, does not rest after an hour unanswered")
	}
	// A new passive live peer, after the agent's first minute, starts resting.
	d2 := dormancy{}
	d2.rest(nil, nil, t0)
	newPeer := []Peer{{Name: "new", PublicKey: passive, Keepalive: 25 * time.Second, Rest: true, Live: true, Passive: true}}
	if out := d2.rest(newPeer, nil, t0.Add(startGrace+time.Second)); out[0].Keepalive != 0 {
		t.Fatal("a new passive live peer does not start resting (two writes per new node)")
	}
}
