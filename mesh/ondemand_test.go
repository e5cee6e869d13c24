package mesh

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestNewPeersStartResting: a peer new to the mesh starts resting unless
// Awake names it (the last run had it on the device); one that may not rest
// never does; a peer the mesh had on its device, even as one that could not
// rest, is not new; without Awake every peer starts on the device.
func TestNewPeersStartResting(t *testing.T) {
	key := func(b byte) wgtypes.Key { var k wgtypes.Key; k[0] = b; return k }
	was, fresh, nat, later := key(1), key(2), key(3), key(4)
	newOD := func(awake func(wgtypes.Key) bool) *onDemand {
		return &onDemand{cfg: OnDemand{After: time.Minute, Awake: awake}, idle: map[wgtypes.Key]idleMark{},
			resting: map[wgtypes.Key]Peer{}, recordDue: make(chan struct{}, 1)}
	}
	keys := func(ps []Peer) map[wgtypes.Key]bool {
		out := map[wgtypes.Key]bool{}
		for _, p := range ps {
			out[p.PublicKey] = true
		}
		return out
	}
	o := newOD(func(k wgtypes.Key) bool { return k == was })
	t0 := time.Now()
	got := keys(o.shape([]Peer{{PublicKey: was, Rest: true}, {PublicKey: fresh, Rest: true}, {PublicKey: nat, Rest: true, Roaming: true}}, t0))
	if len(got) != 2 || !got[was] || !got[nat] {
		t.Fatalf("the first Apply writes %v; want the peer the last run had awake and the one behind NAT", got)
	}
	if _, ok := o.resting[fresh]; !ok {
		t.Fatal("a peer the last run did not have awake does not rest")
	}
	// The NAT peer may now rest (its node left NAT), and a node joins.
	got = keys(o.shape([]Peer{{PublicKey: was, Rest: true}, {PublicKey: fresh, Rest: true}, {PublicKey: nat, Rest: true}, {PublicKey: later, Rest: true}}, t0))
	if len(got) != 2 || !got[was] || !got[nat] {
		t.Fatalf("the second Apply writes %v; want the same two (a peer on the device is not new, a joining node rests)", got)
	}
	if _, ok := o.resting[later]; !ok {
		t.Fatal("a node that joined later starts awake")
	}
	if a := o.awake(); len(a) != 2 || !slices.Contains(a, was.String()) || !slices.Contains(a, nat.String()) {
		t.Fatalf("the awake record would hold %v", a)
	}
	o = newOD(nil)
	if got := o.shape([]Peer{{PublicKey: was, Rest: true}, {PublicKey: fresh, Rest: true}}, t0); len(got) != 2 {
		t.Fatalf("without Awake the first Apply writes %d of 2 peers", len(got))
	}
}

// TestReadAwake: the record as written reads back; no file or another
// version is no record; a key that is not one, or an oversized file, is an
// error.
func TestReadAwake(t *testing.T) {
	dir := t.TempDir()
	var k wgtypes.Key
	k[0] = 7
	write := func(s string) string {
		p := filepath.Join(dir, "awake.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, found, err := ReadAwake(filepath.Join(dir, "none")); found || err != nil {
		t.Fatalf("no file: found %v, err %v", found, err)
	}
	got, found, err := ReadAwake(write(`{"version":1,"awake":["` + k.String() + `"]}`))
	if err != nil || !found || len(got) != 1 || !got[k] {
		t.Fatalf("a record of one key reads as %v (found %v, err %v)", got, found, err)
	}
	if _, found, err := ReadAwake(write(`{"version":2,"awake":["x"]}`)); found || err != nil {
		t.Fatalf("another version: found %v, err %v; want no record", found, err)
	}
	for _, bad := range []string{`{"version":1,"awake":["not a key"]}`, `{"version":1,`, `{"version":1,"awake":["` + strings.Repeat("A", maxAwakeRecord) + `"]}`} {
		if _, found, err := ReadAwake(write(bad)); err == nil || found {
			t.Errorf("%.40q...: found %v, err %v; want an error", bad, found, err)
		}
	}
}
