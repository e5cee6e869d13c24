package keys

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
)

// The pair-key scheduler without root: two key managers on loopback
// addresses run the real exchange (package pq) over TCP; the device is a
// fake that records what the loop would be asked to write.

// keyDev is the device as the key manager sees it, and its writer.
type keyDev struct {
	mu      sync.Mutex
	dormant map[wgtypes.Key]bool
	shook   map[wgtypes.Key]time.Time
	writes  []keyWriteRec
	// handshakes counts those started in place (a rotation beside a
	// session in use).
	handshakes int
}

type keyWriteRec struct {
	pub   wgtypes.Key
	fresh bool
}

func newKeyDev() *keyDev {
	return &keyDev{dormant: map[wgtypes.Key]bool{}, shook: map[wgtypes.Key]time.Time{}}
}

func (d *keyDev) Dormant(pub wgtypes.Key) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dormant[pub]
}

func (d *keyDev) LastHandshake(pub wgtypes.Key) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.shook[pub]
	return t, ok
}

// Handshake records a handshake started in place; the live peer answers.
func (d *keyDev) Handshake(pub wgtypes.Key) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handshakes++
	d.shook[pub] = time.Now().Add(time.Millisecond)
}

// write records a write; a fresh one shakes hands at once, as a live peer does.
func (d *keyDev) write(pub wgtypes.Key, fresh bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes = append(d.writes, keyWriteRec{pub, fresh})
	if fresh {
		d.shook[pub] = time.Now().Add(time.Millisecond)
	}
	return true, nil
}

func (d *keyDev) wrote(fresh bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, w := range d.writes {
		if w.fresh == fresh {
			n++
		}
	}
	return n
}

// keyNode is one node's key manager on a loopback address.
type keyNode struct {
	name  string
	addr  netip.Addr
	priv  wgtypes.Key
	k     *Manager
	dev   *keyDev
	dials atomic.Int32
}

func newKeyNode(t *testing.T, name, addr string, port int, rotation time.Duration) *keyNode {
	t.Helper()
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return keyNodeWith(t, name, netip.MustParseAddr(addr), priv, port, rotation)
}

// restarted is n's node after its agent restarted: the same address and
// node key, a new key manager (no pairs, no keys).
func (n *keyNode) restarted(t *testing.T, port int, rotation time.Duration) *keyNode {
	t.Helper()
	return keyNodeWith(t, n.name, n.addr, n.priv, port, rotation)
}

func keyNodeWith(t *testing.T, name string, addr netip.Addr, priv wgtypes.Key, port int, rotation time.Duration) *keyNode {
	t.Helper()
	n := &keyNode{name: name, addr: addr, priv: priv, dev: newKeyDev()}
	var err error
	n.k, err = New(Config{Mode: Preferred, Rotation: rotation, Port: port, Key: priv, Device: n.dev, Write: n.dev.write,
		Metrics: prometheus.NewRegistry(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.k.dial = func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
		n.dials.Add(1)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: n.addr.AsSlice()}}
		return d.DialContext(ctx, "tcp", to.String())
	}
	return n
}

// common is the key n and o both hold for their pair, if they hold one.
func (n *keyNode) common(o *keyNode) (wgtypes.Key, bool) {
	kn, okn := n.psk(o)
	ko, oko := o.psk(n)
	return kn, okn && oko && kn == ko
}

func (n *keyNode) info() peer.NodeInfo {
	return peer.NodeInfo{Name: n.name, PublicKey: n.priv.PublicKey(), Endpoint: netip.AddrPortFrom(n.addr, 51820)}
}

// listen serves n's exchanges until the test ends.
func (n *keyNode) listen(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(n.addr, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go n.k.Serve(ln)
	return ln
}

// psk is n's key for the pair with other, if it has one.
func (n *keyNode) psk(other *keyNode) (wgtypes.Key, bool) {
	k, ok := n.k.Keys(other.priv.PublicKey()).PSK[other.priv.PublicKey()]
	return k, ok
}

// freePort is a TCP port free on 127.0.0.1 and 127.0.0.2 (the pair's port
// is the same on every node).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if ln2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port))); err == nil {
			ln2.Close()
			return port
		}
	}
	t.Fatal("no port free on both loopback addresses")
	return 0
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after %v: %s; the goroutines:\n%s", d, what, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPair starts two key nodes, a (127.0.0.1) and b (127.0.0.2), that
// know each other and rotate at rotation; they stop when the test ends.
func startPair(t *testing.T, rotation time.Duration) (a, b *keyNode) {
	port := freePort(t)
	a, b = newKeyNode(t, "a", "127.0.0.1", port, rotation), newKeyNode(t, "b", "127.0.0.2", port, rotation)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, n := range []*keyNode{a, b} {
		n.listen(t, port)
		go n.k.Loop(ctx)
	}
	a.k.Update([]peer.NodeInfo{b.info()})
	b.k.Update([]peer.NodeInfo{a.info()})
	return a, b
}

// TestPairKeysAgreeAndRotate: a new pair agrees one key at both ends; the
// initiator re-creates its peer (fresh), the responder writes in place; the
// pair rotates to a new common key at its interval, written in place at
// both ends beside the session the first key made, the rotation's
// initiator starting a handshake under it.
func TestPairKeysAgreeAndRotate(t *testing.T) {
	a, b := startPair(t, 2*time.Second)
	same := func() (wgtypes.Key, bool) { return a.common(b) }
	waitFor(t, 5*time.Second, "both ends hold one key", func() bool { _, ok := same(); return ok })
	first, _ := same()
	if a.dev.wrote(true)+b.dev.wrote(true) == 0 || a.dev.wrote(false)+b.dev.wrote(false) == 0 {
		t.Errorf("writes: a fresh %d in place %d, b fresh %d in place %d; want the initiator fresh and the responder in place",
			a.dev.wrote(true), a.dev.wrote(false), b.dev.wrote(true), b.dev.wrote(false))
	}
	fresh := a.dev.wrote(true) + b.dev.wrote(true)
	waitFor(t, 6*time.Second, "the pair rotates to a new common key", func() bool { k, ok := same(); return ok && k != first })
	a.dev.mu.Lock()
	b.dev.mu.Lock()
	shook := a.dev.handshakes + b.dev.handshakes
	b.dev.mu.Unlock()
	a.dev.mu.Unlock()
	if now := a.dev.wrote(true) + b.dev.wrote(true); now != fresh || shook == 0 {
		t.Errorf("rotation: %d fresh writes (re-created peers) and %d handshakes started in place; want none re-created and a handshake", now-fresh, shook)
	}
}

// TestPairKeysRestingPeer: a peer that rests (its WireGuard does not
// answer) is not called while its agent is not alive in gossip; once it
// joins the pair, which has no key, is exchanged with although it rests; a
// peer that refuses is retried with a growing backoff, not at once.
func TestPairKeysRestingPeer(t *testing.T) {
	port := freePort(t)
	a, b := newKeyNode(t, "a", "127.0.0.1", port, time.Minute), newKeyNode(t, "b", "127.0.0.2", port, time.Minute)
	var alive atomic.Bool
	a.k.alive = func(name string) bool { return name == "b" && alive.Load() }
	a.dev.dormant[b.priv.PublicKey()] = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.listen(t, port)
	go a.k.Loop(ctx)
	a.k.Update([]peer.NodeInfo{b.info()})
	time.Sleep(1500 * time.Millisecond)
	if n := a.dials.Load(); n != 0 {
		t.Fatalf("a called its resting, dead peer %d times", n)
	}
	alive.Store(true) // b's agent answers gossip, but not yet on its key port
	a.k.Joined("b")   // as gossip tells it
	waitFor(t, 7*time.Second, "a calls its alive peer although it rests", func() bool { return a.dials.Load() > 0 })
	time.Sleep(3 * time.Second)
	if n := a.dials.Load(); n > 4 {
		t.Errorf("a called a refusing peer %d times in ~3 s: no backoff", n)
	}
	b.listen(t, port)
	go b.k.Loop(ctx)
	b.k.Update([]peer.NodeInfo{a.info()})
	waitFor(t, 20*time.Second, "the pair agrees a key once b answers", func() bool {
		_, ok := a.common(b)
		return ok
	})
}

// TestPairKeysAfterRestart: an agent that restarts has no key for its
// pairs; its side starts every pair's exchange at once, and both ends hold
// one new common key (not the one from before the restart) without
// waiting for the rotation interval.
func TestPairKeysAfterRestart(t *testing.T) {
	port := freePort(t)
	a, b := newKeyNode(t, "a", "127.0.0.1", port, time.Hour), newKeyNode(t, "b", "127.0.0.2", port, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Both listen before either calls: a first call refused would wait
	// out a backoff, and on a loaded machine the wait below with it.
	a.listen(t, port)
	bln := b.listen(t, port)
	go a.k.Loop(ctx)
	a.k.Update([]peer.NodeInfo{b.info()})
	bctx, bstop := context.WithCancel(ctx)
	go b.k.Loop(bctx)
	b.k.Update([]peer.NodeInfo{a.info()})
	same := a.common
	waitFor(t, 5*time.Second, "both ends hold one key", func() bool { _, ok := same(b); return ok })
	before, _ := same(b)

	// b restarts: the same node key, a new process (no pairs, no keys).
	bstop()
	bln.Close()
	b2 := b.restarted(t, port, time.Hour)
	b2.listen(t, port)
	go b2.k.Loop(ctx)
	b2.k.Update([]peer.NodeInfo{a.info()})
	waitFor(t, 10*time.Second, "the pair agrees a key again after b's restart", func() bool { k, ok := same(b2); return ok && k != before })
}

// TestPairKeysHold: while one end holds (a handover offers its keys), the
// pair agrees no new key, from either end, past several rotation
// intervals; after Resume it rotates again.
func TestPairKeysHold(t *testing.T) {
	a, b := startPair(t, time.Second)
	both := func() (wgtypes.Key, wgtypes.Key) {
		ka, _ := a.psk(b)
		kb, _ := b.psk(a)
		return ka, kb
	}
	waitFor(t, 5*time.Second, "both ends hold one key", func() bool { ka, kb := both(); return ka == kb && ka != (wgtypes.Key{}) })
	if !a.k.Hold(6 * time.Second) {
		t.Fatal("Hold: an exchange still ran after 6 s")
	}
	heldA, heldB := both()
	if heldA != heldB {
		t.Fatalf("after Hold the ends hold different keys")
	}
	time.Sleep(4 * time.Second) // both ends' intervals (1 s, 1.25 s) pass thrice
	if ka, kb := both(); ka != heldA || kb != heldB {
		t.Fatalf("a key was agreed while a held its keys")
	}
	a.k.Resume()
	waitFor(t, 8*time.Second, "the pair rotates after Resume", func() bool { ka, kb := both(); return ka == kb && ka != heldA })
}

// storingPair is a pair whose end a keeps its keys in store, run until
// both hold one key (agreed). stop ends a's loop and returns once it has.
type storingPair struct {
	a, b   *keyNode
	port   int
	ctx    context.Context // b's (and a restarted a's) loop
	aln    net.Listener
	agreed wgtypes.Key
	stop   func()
}

func newStoringPair(t *testing.T, store string, saveAfter time.Duration) *storingPair {
	t.Helper()
	port := freePort(t)
	a, b := newKeyNode(t, "a", "127.0.0.1", port, time.Hour), newKeyNode(t, "b", "127.0.0.2", port, time.Hour)
	a.k.store, a.k.saveAfter = store, saveAfter
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	actx, astop := context.WithCancel(ctx)
	p := &storingPair{a: a, b: b, port: port, ctx: ctx, aln: a.listen(t, port)}
	looped := make(chan struct{})
	go func() {
		defer close(looped)
		a.k.Loop(actx)
	}()
	p.stop = func() {
		astop()
		<-looped
	}
	b.listen(t, port)
	go b.k.Loop(ctx)
	a.k.Update([]peer.NodeInfo{b.info()})
	b.k.Update([]peer.NodeInfo{a.info()})
	waitFor(t, 5*time.Second, "both ends hold one key", func() bool {
		var ok bool
		p.agreed, ok = a.common(b)
		return ok
	})
	return p
}

// TestPairKeysSavedOnStop: a key agreed less than saveAfter before the
// agent stops is on disk when its loop has returned (a restart shakes
// hands under the key the peer holds), unless a handover holds the
// exchanges (the successor owns the file then).
func TestPairKeysSavedOnStop(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("held=%v", hold), func(t *testing.T) {
			store := filepath.Join(t.TempDir(), StoreFile)
			p := newStoringPair(t, store, time.Hour) // only the stop writes
			a, agreed := p.a, p.agreed
			if hold && !a.k.Hold(time.Second) {
				t.Fatal("Hold: an exchange still runs")
			}
			p.stop()
			held, err := loadStored(store, a.priv.PublicKey())
			switch {
			case hold && (err != nil || held != nil):
				t.Fatalf("a held agent wrote its keys on stop: %v %v; the successor owns the file", held, err)
			case !hold && (err != nil || len(held) != 1 || held[0].PSK != agreed.String()):
				t.Fatalf("after the stop the file holds %v (%v), want the key agreed just before it", held, err)
			}
		})
	}
}

// TestPairKeysKeptForRestart: the agreed keys are kept on disk (0600) for a
// restart after a crash: the restarted end holds the same key at once (its
// first handshakes succeed), then agrees a new one with the peer without
// waiting for the rotation. A kept file for another node key, or one
// others may read, or too large, is not used.
func TestPairKeysKeptForRestart(t *testing.T) {
	store := filepath.Join(t.TempDir(), StoreFile)
	p := newStoringPair(t, store, saveAfter)
	a, b, port, agreed := p.a, p.b, p.port, p.agreed
	var held []Held
	waitFor(t, 5*time.Second, "a keeps the key on disk", func() bool {
		var err error
		held, err = loadStored(store, a.priv.PublicKey())
		return err == nil && len(held) == 1 && held[0].PSK == agreed.String()
	})
	if st, err := os.Stat(store); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the kept keys: %v, mode %v; want 0600", err, st.Mode())
	}
	if other, err := loadStored(store, b.priv.PublicKey()); err != nil || other != nil {
		t.Errorf("kept keys read for another node key: %v, %v; want none", other, err)
	}

	// a stops (its last keys written) and starts again from the kept keys.
	p.stop()
	p.aln.Close()
	a2 := a.restarted(t, port, time.Hour)
	a2.k.store = store
	a2.k.RestoreKept()
	if k, ok := a2.psk(b); !ok || k != agreed {
		t.Fatalf("the restarted end does not hold the kept key before any exchange")
	}
	a2.listen(t, port)
	a2ctx, a2stop := context.WithCancel(p.ctx)
	a2looped := make(chan struct{})
	go func() {
		defer close(a2looped)
		a2.k.Loop(a2ctx)
	}()
	defer func() { // its last keys written before the TempDir goes
		a2stop()
		<-a2looped
	}()
	a2.k.Update([]peer.NodeInfo{b.info()})
	waitFor(t, 5*time.Second, "the pair agrees a new key at once after the restart", func() bool {
		k, ok := a2.common(b)
		return ok && k != agreed
	})

	// Files not to trust.
	if err := os.Chmod(store, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadStored(store, a.priv.PublicKey()); err == nil {
		t.Error("kept keys others may read were used")
	}
	big := filepath.Join(t.TempDir(), StoreFile)
	if err := os.WriteFile(big, make([]byte, maxStoreSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadStored(big, a.priv.PublicKey()); err == nil {
		t.Error("an oversized kept-keys file was read")
	}
}

// TestPairKeysKeptThroughAPeersRestart: a peer whose key-exchange port
// refuses (its agent is down) keeps the pair's key for refusedDropAfter:
// an agent that restarts comes back with the key it kept, and dropping it
// would fail its first handshakes. A port that keeps refusing (an agent
// now without post-quantum keys) makes the pair drop it (preferred mode).
func TestPairKeysKeptThroughAPeersRestart(t *testing.T) {
	defer func(d time.Duration) { refusedDropAfter = d }(refusedDropAfter)
	refusedDropAfter = 3 * time.Second
	port := freePort(t)
	// Both rotate every second (the higher key a quarter later if the
	// lower did not): once b is down, a calls it within ~1.25 s.
	a, b := newKeyNode(t, "a", "127.0.0.1", port, time.Second), newKeyNode(t, "b", "127.0.0.2", port, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.listen(t, port)
	go a.k.Loop(ctx)
	bctx, bstop := context.WithCancel(ctx)
	bln := b.listen(t, port)
	go b.k.Loop(bctx)
	a.k.Update([]peer.NodeInfo{b.info()})
	b.k.Update([]peer.NodeInfo{a.info()})
	waitFor(t, 5*time.Second, "both ends hold one key", func() bool {
		_, ok := a.common(b)
		return ok
	})
	bstop() // b's agent is down: its port refuses
	bln.Close()
	waitFor(t, 5*time.Second, "a's rotation is refused", func() bool {
		return strings.Contains(a.k.Status(b.priv.PublicKey()).Failed, "refused")
	})
	if _, ok := a.psk(b); !ok {
		t.Fatal("a dropped the pair's key at the first refusal; a restarting peer comes back with it")
	}
	waitFor(t, 10*time.Second, "a drops the key once the port has refused for refusedDropAfter", func() bool {
		_, ok := a.psk(b)
		return !ok
	})
}
