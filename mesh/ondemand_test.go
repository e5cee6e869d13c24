package mesh

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestIdleNeedsStillCountersAndNoSession: a peer rests only once its
// counters stood still for After and the other end can hold no session
// (last handshake over Reject-After-Time ago, or none); a peer that may not
// rest (behind NAT, a Peer object) never does.
func TestIdleNeedsStillCountersAndNoSession(t *testing.T) {
	key := func(b byte) wgtypes.Key { var k wgtypes.Key; k[0] = b; return k }
	fresh, old, never, busy, nat := key(1), key(2), key(3), key(4), key(5)
	o := &onDemand{cfg: OnDemand{After: 10 * time.Second}, idle: map[wgtypes.Key]idleMark{}, resting: map[wgtypes.Key]Peer{}}
	t0 := time.Now()
	desired := []Peer{{PublicKey: fresh, Rest: true}, {PublicKey: old, Rest: true}, {PublicKey: never, Rest: true},
		{PublicKey: busy, Rest: true}, {PublicKey: nat, Rest: true, Roaming: true}}
	if got := o.shape(desired, t0); len(got) != len(desired) {
		t.Fatalf("shape kept %d of %d peers while none rests", len(got), len(desired))
	}
	device := func(busyBytes int64) []wgtypes.Peer {
		return []wgtypes.Peer{
			{PublicKey: fresh, ReceiveBytes: 100, LastHandshakeTime: t0.Add(-10 * time.Second)},
			{PublicKey: old, ReceiveBytes: 100, LastHandshakeTime: t0.Add(-rejectAfter)},
			{PublicKey: never},
			{PublicKey: busy, TransmitBytes: busyBytes},
			{PublicKey: nat},
		}
	}
	if idle := o.idleNow(device(0), t0); len(idle) != 0 {
		t.Fatalf("%d peers idle at the first look", len(idle))
	}
	if idle := o.idleNow(device(1000), t0.Add(9*time.Second)); len(idle) != 0 {
		t.Fatalf("%d peers idle before After", len(idle))
	}
	idle := o.idleNow(device(2000), t0.Add(10*time.Second))
	got := map[wgtypes.Key]bool{}
	for _, p := range idle {
		got[p.PublicKey] = true
	}
	if len(got) != 2 || !got[old] || !got[never] {
		t.Fatalf("idle after 10 s: %v; want only the peer whose handshake is 180 s old and the one that never had one", idle)
	}
	if mayRest(Peer{Rest: true, External: true}) || mayRest(Peer{Rest: true, Roaming: true}) || mayRest(Peer{}) {
		t.Fatal("a Peer object, a peer behind NAT or a node behind NAT may rest")
	}
}
