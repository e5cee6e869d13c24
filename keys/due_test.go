package keys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/pq"
)

// restingDev is a device on which every peer rests.
type restingDev map[wgtypes.Key]bool

func (d restingDev) Dormant(pub wgtypes.Key) bool              { return d[pub] }
func (restingDev) LastHandshake(wgtypes.Key) (time.Time, bool) { return time.Time{}, false }
func (restingDev) Handshake(wgtypes.Key)                       {}
func (restingDev) write(wgtypes.Key, bool) (bool, error)       { return false, nil }

// restingManager is a key manager of n pairs whose peers all rest, each
// pair looked at once (so each is next due in restingLook).
func restingManager(tb testing.TB, n int) (*Manager, []peer.NodeInfo) {
	tb.Helper()
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	dev := restingDev{}
	k, err := New(Config{Mode: Preferred, Rotation: time.Hour, Port: 1, Key: priv, Device: dev, Write: dev.write,
		Metrics: prometheus.NewRegistry(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	peers := make([]peer.NodeInfo, n)
	for i := range peers {
		pk, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			tb.Fatal(err)
		}
		peers[i] = peer.NodeInfo{Name: fmt.Sprintf("node%d", i), PublicKey: pk.PublicKey(),
			Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 51820)}
		dev[peers[i].PublicKey] = true
	}
	k.Update(peers)
	k.startDue(context.Background())
	return k, peers
}

// TestRestingPairsWaitTheirTurn: a pass starts no exchange with resting
// peers, looks at a resting pair that fell due again restingLook on, and
// leaves the pairs not due alone.
func TestRestingPairsWaitTheirTurn(t *testing.T) {
	k, peers := restingManager(t, 100)
	if d := time.Until(k.startDue(context.Background())); d < restingLook-time.Second || d > restingLook {
		t.Fatalf("a pass with nothing due looks again in %v, want %v (when the resting pairs fall due)", d, restingLook)
	}
	k.mu.Lock()
	p := k.pairs[peers[42].PublicKey]
	p.next = time.Now().Add(-time.Millisecond)
	before := map[wgtypes.Key]time.Time{}
	for pub, q := range k.pairs {
		before[pub] = q.next
	}
	k.mu.Unlock()
	k.startDue(context.Background())
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := time.Until(p.next); d < restingLook-time.Second || d > restingLook {
		t.Errorf("the resting pair that fell due is next due in %v, want %v", d, restingLook)
	}
	for pub, q := range k.pairs {
		if q != p && !q.next.Equal(before[pub]) {
			t.Errorf("pair %s, not due, was moved from %v to %v", q.name, before[pub], q.next)
		}
	}
	if n := len(k.run); n != 0 {
		t.Errorf("%d exchanges started with resting peers", n)
	}
}

// BenchmarkStartDueResting is one pass of the key loop at 5000 pairs whose
// peers rest, a fifth of them due.
func BenchmarkStartDueResting(b *testing.B) {
	const n = 5000
	k, peers := restingManager(b, n)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		past := time.Now().Add(-time.Millisecond)
		k.mu.Lock()
		for range n / 5 {
			k.pairs[peers[i%n].PublicKey].next = past
			i++
		}
		k.mu.Unlock()
		k.startDue(ctx)
	}
}

// TestWokenPeerIsExchangedWith: a pair waiting for its resting peer starts
// its exchange wokeSettle (and up to 1 s) after the peer wakes (Woke pokes the loop, which
// then looks again when it is due), not restingLook later; a pair whose
// peer did not wake keeps its turn.
func TestWokenPeerIsExchangedWith(t *testing.T) {
	k, peers := restingManager(t, 3)
	dialled := make(chan netip.AddrPort, 3)
	k.dial = func(_ context.Context, to netip.AddrPort) (net.Conn, error) {
		dialled <- to
		return nil, errors.New("no peer in this test")
	}
	for len(k.wake) > 0 {
		<-k.wake
	}
	woke, other := peers[0], peers[1]
	k.mu.Lock()
	otherNext := k.pairs[other.PublicKey].next
	k.mu.Unlock()
	k.dev.(restingDev)[woke.PublicKey] = false
	k.Woke(woke.PublicKey)
	k.Woke(peers[2].PublicKey) // still resting: woken, then found resting again
	if len(k.wake) == 0 {
		t.Fatal("Woke did not poke the loop")
	}
	if d := time.Until(k.startDue(context.Background())); d > wokeSettle+time.Second || d < wokeSettle-time.Second {
		t.Fatalf("after a wake the loop looks again in %v, want %v and up to 1 s", d, wokeSettle)
	}
	select {
	case to := <-dialled:
		t.Fatalf("dialled %v at the wake itself (its first packets wait in the peer)", to)
	default:
	}
	time.Sleep(wokeSettle + time.Second)
	k.startDue(context.Background())
	select {
	case to := <-dialled:
		if to.Addr() != woke.Endpoint.Addr() {
			t.Fatalf("dialled %v, want the woken peer's %v", to, woke.Endpoint.Addr())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exchange with the woken peer")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := k.pairs[other.PublicKey].next; !n.Equal(otherNext) {
		t.Errorf("the pair of a peer that did not wake moved from %v to %v", otherNext, n)
	}
	if p := k.pairs[peers[2].PublicKey]; !p.resting || time.Until(p.next) < restingLook-time.Second {
		t.Errorf("a woken peer found resting again is due in %v (resting %v), want %v", time.Until(p.next), p.resting, restingLook)
	}
	select {
	case to := <-dialled:
		t.Errorf("dialled %v too", to)
	default:
	}
}

// TestExchangeResultWakesASleepingLoop: the loop sleeps until the next
// pair falls due (up to lookEvery, or an exchange's timeout while it
// runs), so an exchange that ends and is due again sooner wakes it; one
// due again later does not.
func TestExchangeResultWakesASleepingLoop(t *testing.T) {
	k, peers := restingManager(t, 3)
	pub := peers[1].PublicKey
	drain := func() bool {
		select {
		case <-k.wake:
			return true
		default:
			return false
		}
	}
	drain()
	k.mu.Lock()
	k.looking = time.Now().Add(lookEvery)
	k.mu.Unlock()
	k.result(pub, errors.New("connection reset"), "initiator") // first failure: again in 1 s
	if !drain() {
		t.Fatal("a failed exchange due again in 1 s did not wake a loop asleep for 30 s")
	}
	k.mu.Lock()
	k.looking = time.Now().Add(100 * time.Millisecond)
	k.mu.Unlock()
	k.result(pub, errors.New("connection reset"), "initiator") // again in 2 s
	if drain() {
		t.Fatal("a failed exchange due after the loop's next look woke it")
	}

	// A success is due again after the rotation interval: that too wakes
	// a loop asleep past it (it slept out the exchange's timeout).
	k.mu.Lock()
	k.rotation = time.Second
	k.looking = time.Now().Add(pq.Timeout + time.Second)
	k.mu.Unlock()
	k.result(pub, nil, "initiator")
	if !drain() {
		t.Fatal("an exchange that agreed and is due again in ~1 s did not wake a loop asleep for 6 s")
	}
	k.mu.Lock()
	k.looking = time.Now().Add(100 * time.Millisecond)
	k.mu.Unlock()
	k.result(pub, nil, "responder")
	if drain() {
		t.Fatal("an agreement due after the loop's next look woke it")
	}
}
