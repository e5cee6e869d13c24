package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/agent/config"
	"github.com/weftnet/weft/agent/httpapi"
	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/nft"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// The loop without root: the data plane is a fake that records what the
// loop asks of it (and fails when told to), nftables is knftables' fake,
// the state and CNI directories are temporary.

// fakePlane is the device as the loop writes it.
type fakePlane struct {
	mu      sync.Mutex
	fail    int // the next fail Applies fail
	applied []mesh.State
	at      []time.Time
	current mesh.State
}

func (f *fakePlane) Apply(s mesh.State) (mesh.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = append(f.at, time.Now())
	if f.fail > 0 {
		f.fail--
		return mesh.Changes{}, errors.New("the device is busy (fake)")
	}
	f.applied = append(f.applied, s)
	var ch mesh.Changes
	if !reflect.DeepEqual(s, f.current) {
		ch.PeersWritten = len(s.Peers)
	}
	f.current = s
	return ch, nil
}

func (f *fakePlane) WritePeerKey(wgtypes.Key, *mesh.Peer, bool) (bool, error) { return false, nil }
func (f *fakePlane) Peers() ([]wgtypes.Peer, error)                           { return nil, nil }
func (f *fakePlane) Resting(wgtypes.Key) bool                                 { return false }
func (f *fakePlane) RestingPeer(wgtypes.Key) (wgtypes.Peer, bool)             { return wgtypes.Peer{}, false }
func (f *fakePlane) Idle(wgtypes.Key) bool                                    { return false }

func (f *fakePlane) calls() (applied []mesh.State, at []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mesh.State(nil), f.applied...), append([]time.Time(nil), f.at...)
}

func testNode(t *testing.T, name string, i byte) peer.NodeInfo {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return peer.NodeInfo{Name: name, PublicKey: k.PublicKey(), Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, i}), 51820),
		PodCIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24)}}
}

// testAgent is an agent in standalone mode, built as Run builds one but on
// the fakes.
func testAgent(t *testing.T, p *fakePlane) (*Agent, *knftables.Fake) {
	t.Helper()
	dir := t.TempDir()
	self := testNode(t, "node1", 1)
	cfg := config.Config{NodeName: "node1", PodCIDRs: self.PodCIDRs, StateDir: filepath.Join(dir, "state"), CNIConfDir: filepath.Join(dir, "cni"),
		HTTPAddr: "127.0.0.1:9587", Interface: "weft0", ListenPort: 51820, GossipPort: 7946, PQ: keys.Off, Masquerade: true}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tables := knftables.NewFake(knftables.InetFamily, nft.Table)
	a := &Agent{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), self: self, selfLocation: make(chan string, 1), pmtu: mesh.NewPathMTUs(),
		extChanged: make(chan struct{}, 1), extRefused: map[string]string{}, rotateReq: make(chan chan error), keyWrites: make(chan keyWrite),
		mesh: p, stopped: make(chan struct{}), tables: tables, mtu: 1420, bounds: peer.Bounds{Underlay: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}
	a.metrics = newMetrics()
	a.egress = newEgress(tables, a.log)
	a.http = httpapi.New(view{a}, a.metrics.reg, "/nowhere")
	a.reg = peer.NewRegistry(self, false, a.bounds, a.rejected)
	priv, _ := wgtypes.GeneratePrivateKey()
	var err error
	if a.pq, err = keys.New(keys.Config{Mode: keys.Off, Key: priv, Metrics: a.metrics.reg, Log: a.log}); err != nil {
		t.Fatal(err)
	}
	if a.cniConf, err = plan.ConfList(cfg.ConfInput(a.mtu)); err != nil {
		t.Fatal(err)
	}
	if err := a.ensureBaseRules(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, tables
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestReconcileTwiceWritesNothingTheSecondTime: a second pass over the
// same peers asks the device for the same state and writes nothing else
// (no nftables transaction, no new peer cache, no new conflist); a new
// peer changes each of them.
func TestReconcileTwiceWritesNothingTheSecondTime(t *testing.T) {
	p := &fakePlane{}
	a, tables := testAgent(t, p)
	ctx := context.Background()
	a.reg.Set(peer.SourceGossip, testNode(t, "node2", 2))
	if _, err := a.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.ready.Load() {
		t.Fatal("not ready after a pass that succeeded")
	}
	cache, conf := filepath.Join(a.cfg.StateDir, api.PeerCacheFile), filepath.Join(a.cfg.CNIConfDir, api.ConfFile)
	cacheIno, confIno, tx := inode(t, cache), inode(t, conf), tables.LastTransaction

	if _, err := a.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	applied, _ := p.calls()
	if len(applied) != 2 || !reflect.DeepEqual(applied[0], applied[1]) {
		t.Fatalf("the second pass asked the device for another state:\n%+v\n%+v", applied[0], applied[len(applied)-1])
	}
	if tables.LastTransaction != tx {
		t.Errorf("the second pass ran an nftables transaction: %v", tables.LastTransaction)
	}
	if inode(t, cache) != cacheIno || inode(t, conf) != confIno {
		t.Error("the second pass wrote the peer cache or the conflist again")
	}
	if got := testutil.ToFloat64(a.metrics.reconciles.WithLabelValues("unchanged")); got != 1 {
		t.Errorf("reconciles{result=unchanged} = %v, want 1", got)
	}

	// A new peer's address joins the egress sets by the writer, by element.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go a.egress.run(wctx)
	a.reg.Set(peer.SourceGossip, testNode(t, "node3", 3))
	if _, err := a.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	applied, _ = p.calls()
	if last := applied[len(applied)-1]; len(last.Peers) != 2 {
		t.Errorf("after node3 joined the device was asked for %d peers, want 2", len(last.Peers))
	}
	var last *knftables.Transaction
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		a.egress.writeMu.Lock()
		last = tables.LastTransaction
		a.egress.writeMu.Unlock()
		if last != tx {
			break
		}
	}
	if last == tx {
		t.Fatal("node3's address was not exempted from egress NAT: no nftables transaction")
	}
	if got := last.String(); !strings.Contains(got, "add element inet weft no-masquerade-v4 { 192.0.2.3/32 }") || strings.Contains(got, "flush") {
		t.Errorf("node3's address was not added by element:\n%s", got)
	}
	// The cache was written less than cacheEvery ago: node3 waits its turn.
	if inode(t, cache) != cacheIno || a.saveDue == nil {
		t.Fatal("node3 joined within cacheEvery of the last save: want the save put off, not done at once nor dropped")
	}
	<-a.saveDue
	a.savePending()
	if inode(t, cache) == cacheIno {
		t.Error("node3 is not in the peer cache")
	}
	if got, err := loadCache(a.cfg.StateDir); err != nil || len(got) != 2 {
		t.Errorf("the peer cache holds %d peers (%v), want node2 and node3", len(got), err)
	}
}

// TestLoopRetriesWithBackoff: a pass the device refuses is retried after
// 1 s, then 2 s; once the device takes it the node is ready (the conflist
// written). The loop ends with its context (nil) or the device (an error).
func TestLoopRetriesWithBackoff(t *testing.T) {
	p := &fakePlane{fail: 2}
	a, _ := testAgent(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.loop(ctx, nil) }()
	for end := time.Now().Add(10 * time.Second); !a.ready.Load(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("not ready 10 s after the device took a pass")
		}
	}
	_, at := p.calls()
	if len(at) != 3 {
		t.Fatalf("%d passes before ready, want 3 (two refused)", len(at))
	}
	if d1, d2 := at[1].Sub(at[0]), at[2].Sub(at[1]); d1 < 900*time.Millisecond || d2 < 1900*time.Millisecond || d2 < d1 {
		t.Errorf("retried after %v, then %v: want 1 s, then 2 s", d1, d2)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.CNIConfDir, api.ConfFile)); err != nil {
		t.Errorf("ready without a conflist: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the loop ended with %v when its context ended, want nil", err)
	}

	b, _ := testAgent(t, &fakePlane{})
	stopped := make(chan struct{})
	b.stopped = stopped
	go func() { done <- b.loop(context.Background(), nil) }()
	close(stopped)
	if err := <-done; err == nil {
		t.Error("the loop went on after the device stopped")
	}
}

// TestRetrierBacksOff: failures back off 1, 2, 4, 5, 5 s; a pass that
// succeeds with work pending comes back after 1 s and resets the backoff;
// a clean pass schedules nothing.
func TestRetrierBacksOff(t *testing.T) {
	r := newRetrier()
	fail := errors.New("fail")
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if d, ok := r.after(false, fail); !ok || d != want {
			t.Errorf("failure %d: next pass after %v (%v), want %v", i+1, d, ok, want)
		}
	}
	if d, ok := r.after(true, nil); !ok || d != time.Second {
		t.Errorf("pending work: next pass after %v (%v), want 1s", d, ok)
	}
	if d, _ := r.after(false, fail); d != time.Second {
		t.Errorf("a failure after a good pass waits %v, want 1s (backoff reset)", d)
	}
	if _, ok := r.after(false, nil); ok {
		t.Error("a clean pass scheduled another")
	}
}

// TestResyncReusesAnUnchangedPlan: a pass whose inputs are the last one's
// (a resync) asks the device for the same state without planning it again
// (the plan's peers are the last pass's, not a copy); a new peer, or a
// change of this node, is planned and applied at the next pass.
func TestResyncReusesAnUnchangedPlan(t *testing.T) {
	p := &fakePlane{}
	a, _ := testAgent(t, p)
	ctx := context.Background()
	pass := func() mesh.State {
		t.Helper()
		if _, err := a.reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		applied, _ := p.calls()
		return applied[len(applied)-1]
	}
	a.reg.Set(peer.SourceGossip, testNode(t, "node2", 2))
	first := pass()
	planned := a.memo.plan.Peers
	again := pass()
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("a pass with nothing changed applied\n%+v\nafter\n%+v", again, first)
	}
	if &a.memo.plan.Peers[0] != &planned[0] {
		t.Error("a pass with nothing changed planned again")
	}

	n3 := testNode(t, "node3", 3)
	a.reg.Set(peer.SourceGossip, n3)
	s := pass()
	if len(s.Peers) != 2 || !slices.ContainsFunc(s.Peers, func(p mesh.Peer) bool { return p.PublicKey == n3.PublicKey }) {
		t.Fatalf("after node3 joined the pass applied peers %+v", s.Peers)
	}
	planned = a.memo.plan.Peers
	a.self.Location = "rack-2" // this node moved: every peer's path may change
	pass()
	if &a.memo.plan.Peers[0] == &planned[0] {
		t.Error("a pass after this node changed did not plan again")
	}
	// The egress plan follows the peers too: node3's pod range is in it.
	if want := n3.PodCIDRs[0]; !slices.Contains(a.memo.egress.ClusterPods, want) && !slices.ContainsFunc(a.memo.egress.ClusterPods, func(p netip.Prefix) bool { return p.Contains(want.Addr()) }) {
		t.Errorf("egress plan's pod ranges %v lack node3's %v", a.memo.egress.ClusterPods, want)
	}
}
