// Package gossip is the memberlist source: it announces this node and turns
// other members' metadata into registry claims (it only observes; the
// registry decides), behind a transport that bounds every stream a
// stranger can open (guard.go).
package gossip

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftnet/weft/peer"
)

// Source is the memberlist source: it announces this node and turns other
// members' metadata into registry claims. It only observes; the registry decides.
type Source struct {
	ml     *memberlist.Memberlist
	tr     *guardedTransport
	name   string
	reg    *peer.Registry
	log    *slog.Logger
	metaMu sync.Mutex
	meta   []byte
	seeds  func() []string
	stop   chan struct{}
	wg     sync.WaitGroup

	aliveMu sync.Mutex
	alive   map[string]bool // members memberlist holds alive, by name

	onJoin atomic.Pointer[func(name string)] // OnJoin's

	formerMu sync.Mutex
	former   map[string]former // members that died or left, by name (reconnect)
}

// Config configures the memberlist source.
type Config struct {
	Name      string
	Bind      netip.Addr
	Port      int
	SecretKey []byte // 32 bytes; nil runs unencrypted (--insecure-gossip)
	Seeds     func() []string
	// CountLog counts memberlist's log lines by level, CountRefused the
	// streams the guard refused by reason (both may be nil).
	CountLog     func(level string)
	CountRefused func(reason string)
	Profile      string // Standalone or Kubernetes
}

// Gossip profiles (memberlist timings). Standalone, gossip is the authority:
// a failure it detects removes the peer, so it runs memberlist's LAN
// defaults (probe 1 s, gossip 200 ms, push-pull 30 s). In Kubernetes mode
// the API server is the authority and gossip liveness removes nothing
// (docs/design.md, rule 10); gossip only moves endpoints and carries new
// nodes while the API server is away, so it backs off: probe 5 s, gossip
// 1 s, push-pull 120 s. What a node pays for its member, alone in its
// process at 250 members, fell from 0.16 to 0.10 % of a core with probe
// 2 s → 5 s and gossip 500 ms → 1 s (weft-bench gossip-scale; figures in
// the design doc); a crash is declared 2.5 times later (27 s in the lab).
const (
	Standalone = "standalone"
	Kubernetes = "kubernetes"
)

// MemberlistConfig is memberlist's configuration for a profile; weft-bench
// gossip measures the same.
func MemberlistConfig(profile string) (*memberlist.Config, error) {
	c := memberlist.DefaultLANConfig()
	c.DeadNodeReclaimTime = 5 * time.Second // a restarted agent may come back on the same name
	switch profile {
	case Standalone:
	case Kubernetes:
		c.ProbeInterval = 5 * time.Second
		c.GossipInterval = time.Second
		c.PushPullInterval = 120 * time.Second
	default:
		return nil, fmt.Errorf("unknown gossip profile %q", profile)
	}
	return c, nil
}

// Start binds the gossip port and starts announcing self. Joining the
// seeds happens in the background and is retried: the first node of a mesh has
// nobody to join, and a seed that is down now may be up later.
func Start(cfg Config, self peer.NodeInfo, reg *peer.Registry, logger *slog.Logger) (*Source, error) {
	if cfg.CountLog == nil {
		cfg.CountLog = func(string) {}
	}
	if cfg.CountRefused == nil {
		cfg.CountRefused = func(string) {}
	}
	meta, err := peer.EncodeMeta(self)
	if err != nil {
		return nil, err
	}
	g := &Source{name: cfg.Name, reg: reg, log: logger, meta: meta, seeds: cfg.Seeds, stop: make(chan struct{}), alive: map[string]bool{}, former: map[string]former{}}
	mc, err := MemberlistConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.Bind.String()
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.Bind.String()
	mc.AdvertisePort = cfg.Port
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = g
	mc.Events = g
	mlog := newMemberlistLogger(logger, cfg.CountLog)
	mc.Logger = mlog.std()
	where := netip.AddrPortFrom(cfg.Bind, uint16(cfg.Port))
	tr, err := newGuardedTransport(cfg.Bind, cfg.Port, mlog, cfg.CountRefused)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", where, err)
	}
	mc.Transport = tr
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", where, err)
	}
	g.ml, g.tr = ml, tr
	g.wg.Add(1)
	go g.joinLoop()
	return g, nil
}

// Members counts the live members, this node included.
func (g *Source) Members() int { return g.ml.NumMembers() }

// Stop leaves the cluster (so peers drop this node at once) and shuts down.
func (g *Source) Stop(leave bool) {
	close(g.stop)
	g.tr.stopDials() // a join under way returns now (Leave gossips over UDP)
	g.wg.Wait()
	if leave {
		g.ml.Leave(time.Second)
	}
	g.ml.Shutdown()
}

// joinLoop joins the seeds while this node is alone, retrying with a backoff
// from 200ms up to 5s so that nodes started together find each other fast.
func (g *Source) joinLoop() {
	defer g.wg.Done()
	const maxWait = 5 * time.Second
	backoff := workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, maxWait)
	var failed int         // attempts in a row that reached nobody
	var reported time.Time // when they were last logged
	reconnected := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if g.ml.NumMembers() > 1 {
			backoff.Forget("join")
			t.Reset(maxWait)
			if time.Since(reconnected) >= reconnectEvery {
				g.reconnect()
				reconnected = time.Now()
			}
			continue
		}
		t.Reset(backoff.When("join"))
		seeds := g.seeds()
		if len(seeds) == 0 {
			continue
		}
		n, err := g.join(seeds)
		if err != nil && n == 0 {
			// Once, then once a minute: each attempt draws other seeds,
			// and with many Nodes without an agent every attempt's
			// error differs (a line every 5 s at 5000 Nodes).
			failed++
			if now := time.Now(); now.Sub(reported) >= joinReportEvery {
				g.log.Warn("cannot reach any gossip seed; retrying", "attempts", failed, "seeds", len(seeds), "first", seeds[0], "err", oneLine(err.Error()))
				reported = now
			}
			continue
		}
		g.log.Info("joined gossip", "contacted", n, "members", g.ml.NumMembers(), "attempts", failed+1)
		failed, reported = 0, time.Time{}
	}
}

// joinReportEvery is how often a node alone logs that its joins fail.
const joinReportEvery = time.Minute

// Seeds tried per join attempt, and at once: one that answers is enough,
// and each that does not costs memberlist's TCP timeout (10 s), so an
// attempt takes at most 20 s and the next one reads the seeds again (by
// then WireGuard knows which peers answer: see Agent.seeds).
const (
	MaxJoinSeeds     = 16
	joinConcurrently = 8
)

// join contacts the first MaxJoinSeeds seeds, joinConcurrently at a time,
// and starts no more once one has answered. It returns how many answered
// and, when none did, the first error.
func (g *Source) join(seeds []string) (int, error) {
	if len(seeds) > MaxJoinSeeds {
		seeds = seeds[:MaxJoinSeeds]
	}
	var (
		mu       sync.Mutex
		answered int
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, joinConcurrently)
	for _, s := range seeds {
		sem <- struct{}{}
		mu.Lock()
		done := answered > 0
		mu.Unlock()
		if done {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := g.ml.Join([]string{s})
			mu.Lock()
			defer mu.Unlock()
			answered += n
			if n == 0 && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if answered > 0 {
		return answered, nil
	}
	return 0, firstErr
}

func (g *Source) claim(n *memberlist.Node) {
	if n.Name == g.name {
		return
	}
	info, err := peer.DecodeMeta(n.Name, n.Meta)
	if err != nil {
		g.reg.Reject(peer.SourceGossip, n.Name, err.Error())
		return
	}
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		info.GossipAddr = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	g.reg.Set(peer.SourceGossip, info)
}

// Alive reports whether the named node answers gossip (memberlist holds it
// alive).
func (g *Source) Alive(name string) bool {
	g.aliveMu.Lock()
	defer g.aliveMu.Unlock()
	return g.alive[name]
}

func (g *Source) setAlive(name string, alive bool) {
	g.aliveMu.Lock()
	defer g.aliveMu.Unlock()
	if alive {
		g.alive[name] = true
	} else {
		delete(g.alive, name)
	}
}

// OnJoin sets a function told the name of each member that joins (is
// alive now). memberlist calls it from its event delivery: it must not
// wait.
func (g *Source) OnJoin(f func(name string)) { g.onJoin.Store(&f) }

// memberlist.EventDelegate
func (g *Source) NotifyJoin(n *memberlist.Node) {
	g.setAlive(n.Name, true)
	g.forget(n.Name)
	g.claim(n)
	if f := g.onJoin.Load(); f != nil {
		(*f)(n.Name)
	}
}

func (g *Source) NotifyUpdate(n *memberlist.Node) { g.claim(n) }
func (g *Source) NotifyLeave(n *memberlist.Node) {
	g.setAlive(n.Name, false)
	g.remember(n)
	g.log.Info("gossip member left or died", "node", n.Name)
	g.reg.Delete(peer.SourceGossip, n.Name)
}

// memberlist.Delegate
func (g *Source) NodeMeta(limit int) []byte {
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	if len(g.meta) > limit {
		return nil
	}
	return g.meta
}

// Announce gossips a change of this node's own claim (a new key).
func (g *Source) Announce(self peer.NodeInfo) error {
	meta, err := peer.EncodeMeta(self)
	if err != nil {
		return err
	}
	g.metaMu.Lock()
	g.meta = meta
	g.metaMu.Unlock()
	return g.ml.UpdateNode(5 * time.Second)
}
func (g *Source) NotifyMsg([]byte)                           {}
func (g *Source) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *Source) LocalState(join bool) []byte                { return nil }
func (g *Source) MergeRemoteState(buf []byte, join bool)     {}

// memberlistLogger routes memberlist's log lines into slog at a level read
// from their prefix. Warnings and errors are counted always but logged at
// most a burst of 10 and then one per 10 s: each undecryptable packet is an
// error line, and anyone who reaches the port can send them.
type memberlistLogger struct {
	l          *slog.Logger
	limit      *rate.Limiter
	suppressed atomic.Int64
	count      func(level string)
}

func newMemberlistLogger(l *slog.Logger, count func(level string)) *memberlistLogger {
	return &memberlistLogger{l: l, limit: rate.NewLimiter(rate.Every(10*time.Second), 10), count: count}
}

func (m *memberlistLogger) std() *log.Logger { return log.New(m, "", 0) }

func (m *memberlistLogger) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.Contains(s, "[ERR]"):
		level = slog.LevelError
	case strings.Contains(s, "[WARN]"):
		level = slog.LevelWarn
	}
	if level == slog.LevelDebug {
		m.l.Debug(s, "component", "memberlist")
		return len(p), nil
	}
	if m.count != nil {
		m.count(strings.ToLower(level.String()))
	}
	if !m.limit.Allow() {
		m.suppressed.Add(1)
		return len(p), nil
	}
	attrs := []any{"component", "memberlist"}
	if n := m.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed_since_last", n)
	}
	m.l.Log(context.Background(), level, s, attrs...)
	return len(p), nil
}

var _ io.Writer = (*memberlistLogger)(nil)

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
