package scale

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/bench"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/simpeer"
)

// Live generated nodes (the default; WEFT_SCALE_LIVE=0: dead ones): the
// sink owns their whole address range (a local route) and one Sim in the
// benchmark's process answers for all of them there.

func liveFakes() bool { return os.Getenv("WEFT_SCALE_LIVE") != "0" }

var (
	fakeKeysOnce sync.Once
	fakeKeys     []wgtypes.Key
)

// fakeKey is generated Node i's private key (made once for all sizes).
func fakeKey(i int) wgtypes.Key {
	fakeKeysOnce.Do(func() {
		fakeKeys = make([]wgtypes.Key, maxFakes)
		for j := range fakeKeys {
			k, err := wgtypes.GeneratePrivateKey()
			if err != nil {
				panic(err)
			}
			fakeKeys[j] = k
		}
	})
	return fakeKeys[i]
}

// fakeIndex is fakeAddr's inverse.
func fakeIndex(a netip.Addr) (int, bool) {
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	i := int(b[2])*250 + int(b[3]) - 1
	if b[0] != 10 || b[1] != 97 || b[3] == 0 || b[3] > 250 || i >= maxFakes {
		return 0, false
	}
	return i, true
}

// startSim makes sink answer for every generated node.
func startSim(b testing.TB, sink *netlab.Node) *simpeer.Sim {
	if out, err := sink.Run(context.Background(), "ip", "route", "add", "local", fakeRange, "dev", "lo"); err != nil {
		b.Fatalf("sink: %v %s", err, out)
	}
	var udp *net.UDPConn
	var tcp net.Listener
	err := sink.Do(func() error {
		var err error
		if udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: 51820}); err != nil {
			return err
		}
		tcp, err = net.Listen("tcp4", "0.0.0.0:51821") // --pq-port's default
		return err
	})
	if err != nil {
		b.Fatalf("sink sockets: %v", err)
	}
	sim := simpeer.New(simpeer.Config{UDP: udp, PQ: tcp, Node: func(a netip.Addr) (wgtypes.Key, bool) {
		i, ok := fakeIndex(a)
		if !ok {
			return wgtypes.Key{}, false
		}
		return fakeKey(i), true
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("simulated nodes: %v", err)
		}
	})
	return sim
}

// pinger sends ICMP echo requests from a node's namespace and times the
// replies.
type pinger struct {
	c  *icmp.PacketConn
	id int

	mu   sync.Mutex
	seq  int
	sent map[int]time.Time     // seq → sent
	rtt  map[int]time.Duration // seq → round trip
}

func newPinger(b testing.TB, n *netlab.Node, id int) *pinger {
	p := &pinger{id: id, sent: map[int]time.Time{}, rtt: map[int]time.Duration{}}
	if err := n.Do(func() error {
		var err error
		p.c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		b.Fatalf("pinger on %s: %v", n.Name, err)
	}
	b.Cleanup(func() { p.c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := p.c.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != p.id {
				continue
			}
			p.mu.Lock()
			if at, ok := p.sent[e.Seq]; ok {
				if _, seen := p.rtt[e.Seq]; !seen {
					p.rtt[e.Seq] = now.Sub(at)
				}
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// send pings to and returns the ping's sequence number.
func (p *pinger) send(to netip.Addr) int {
	p.mu.Lock()
	p.seq = (p.seq + 1) & 0xffff
	seq := p.seq
	p.sent[seq] = time.Now()
	delete(p.rtt, seq)
	p.mu.Unlock()
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("weft-bench-scale")}}
	b, _ := m.Marshal(nil)
	_, _ = p.c.WriteTo(b, &net.IPAddr{IP: to.AsSlice()})
	return seq
}

// result is a ping's round trip, or false when no reply came.
func (p *pinger) result(seq int) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.rtt[seq]
	return d, ok
}

// round pings a pod of every generated node in set once, waits wait, and
// splits set into the nodes that answered and those that did not.
func (p *pinger) round(set []int, wait time.Duration) (answered, silent []int) {
	seqs := make([]int, len(set))
	for m, i := range set {
		seqs[m] = p.send(podAddr(i))
	}
	time.Sleep(wait)
	for m, i := range set {
		if _, ok := p.result(seqs[m]); ok {
			answered = append(answered, i)
		} else {
			silent = append(silent, i)
		}
	}
	return answered, silent
}

// podAddr is an address in generated node i's pod range (the Sim answers
// any).
func podAddr(i int) netip.Addr { return fakeCIDR(i).Addr().Next() }

// measureActive is the working-set phase: each agent pings a working set
// of generated nodes once a second for activeSeconds; the set fills with
// one newcomer every 200 ms, then one newcomer a second replaces its
// oldest member. Every newcomer rests when it joins (its first ping wakes
// it); the agents' working sets are disjoint.
func measureActive(b *testing.B, live []*netlab.Node, pids []int, sim *simpeer.Sim, fakes int, p *bench.ScalePoint) {
	const activeSeconds, tick = 60, 200 * time.Millisecond
	set := min(50, fakes/len(live)/2)
	p.Live, p.ActiveSeconds, p.ActiveSet = true, activeSeconds, set
	pubs := make([]wgtypes.Key, len(live))
	for j, n := range live {
		var err error
		if pubs[j], err = wgtypes.ParseKey(labtest.PublicKey(b, n)); err != nil {
			b.Fatal(err)
		}
	}
	if dir := os.Getenv("WEFT_SCALE_PROFILES"); dir != "" { // the base for the working set's allocations
		b.Logf("N=%d: %s at the working set's start: %s", p.Nodes, live[0].Name, runtimeLine(b, live[0], pids[0]))
		saveProfile(b, live[0], "heap", fmt.Sprintf("%s/scale-%d-heap-active-start.pprof", dir, p.Nodes))
	}
	before := make([]float64, len(pids))
	counts := make([]simpeer.Counts, len(live))
	passes := make([]float64, len(live)) // what makes the working set's garbage
	for j, n := range live {
		before[j] = cpuTicks(b, pids[j])
		counts[j] = sim.For(pubs[j])
		passes[j] = labtest.MetricSum(b, n, "weft_reconciles_total")
	}
	type sent struct {
		pg    *pinger
		seq   int
		first bool
	}
	var (
		mu    sync.Mutex
		pings []sent
		wg    sync.WaitGroup
	)
	start := time.Now()
	for j, n := range live {
		pg := newPinger(b, n, 0x5700+j)
		var cands []int // this agent's newcomers, in order
		for i := j; i < fakes; i += len(live) {
			cands = append(cands, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(tick)
			defer t.Stop()
			var ws []int
			perSecond := int(time.Second / tick)
			for step := 0; step < activeSeconds*perSecond; step++ {
				<-t.C
				joined := -1
				if (len(ws) < set || step%perSecond == 0) && len(cands) > 0 {
					joined, cands = cands[0], cands[1:]
					if len(ws) >= set {
						ws = ws[1:]
					}
					ws = append(ws, joined)
					s := sent{pg, pg.send(podAddr(joined)), true}
					mu.Lock()
					pings = append(pings, s)
					mu.Unlock()
				}
				for m, i := range ws {
					if i != joined && m%perSecond == step%perSecond {
						s := sent{pg, pg.send(podAddr(i)), false}
						mu.Lock()
						pings = append(pings, s)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	time.Sleep(3 * time.Second) // the last replies
	var first, active []float64
	for _, s := range pings {
		d, ok := s.pg.result(s.seq)
		switch {
		case s.first:
			p.FirstPackets++
			if !ok {
				p.FirstLost++
				continue
			}
			first = append(first, float64(d.Microseconds())/1000)
		default:
			p.ActivePings++
			if !ok {
				p.ActiveLost++
				continue
			}
			active = append(active, float64(d.Microseconds())/1000)
		}
	}
	slices.Sort(first)
	slices.Sort(active)
	if len(first) > 0 {
		p.FirstP50Millis, p.FirstP99Millis = pct(first, 0.5), pct(first, 0.99)
	}
	if len(active) > 0 {
		p.ActiveP50Millis, p.ActiveP99Millis = pct(active, 0.5), pct(active, 0.99)
	}
	for j, n := range live {
		b.Logf("N=%d: %s made %.0f reconcile passes in the working set's %.0f s", p.Nodes, n.Name, labtest.MetricSum(b, n, "weft_reconciles_total")-passes[j], el)
		p.ActiveCPU = max(p.ActiveCPU, (cpuTicks(b, pids[j])-before[j])/100/el*100)
		rss := labtest.RssMiB(b, pids[j])
		p.ActiveRSSMiB = max(p.ActiveRSSMiB, rss)
		b.Logf("N=%d: %s at the working set's end: RSS %.1f MiB; %s", p.Nodes, n.Name, rss, runtimeLine(b, n, pids[j]))
		if dir := os.Getenv("WEFT_SCALE_PROFILES"); dir != "" && j == 0 { // after the RSS: a profile's collection changes it
			saveProfile(b, n, "heap?gc=1", fmt.Sprintf("%s/scale-%d-heap-active.pprof", dir, p.Nodes))
		}
		c := sim.For(pubs[j])
		p.HandshakesSec = max(p.HandshakesSec, float64(c.Handshakes-counts[j].Handshakes)/el)
		p.ExchangesSec = max(p.ExchangesSec, float64(c.Exchanges-counts[j].Exchanges)/el)
		// weft_peers counts the resting too.
		rest := int(labtest.MetricSum(b, n, "weft_peers_resting"))
		if on := int(labtest.MetricSum(b, n, "weft_peers")) - rest; on > p.ActivePeers {
			p.ActivePeers, p.RestingPeers = on, rest
		}
	}
	b.Logf("N=%d: working sets of %d for %.0f s: CPU %.2f %%, RSS %.1f MiB, %d on the device / %d resting, %.2f handshakes/s, %.3f exchanges/s; first packet to a resting peer p50 %.1f ms p99 %.1f ms (%d of %d lost); awake p50 %.2f ms p99 %.2f ms (%d of %d lost); simulated nodes in all: %+v",
		p.Nodes, set, el, p.ActiveCPU, p.ActiveRSSMiB, p.ActivePeers, p.RestingPeers, p.HandshakesSec, p.ExchangesSec,
		p.FirstP50Millis, p.FirstP99Millis, p.FirstLost, p.FirstPackets, p.ActiveP50Millis, p.ActiveP99Millis, p.ActiveLost, p.ActivePings, sim.Total())

}

// measureRestart makes set (generated nodes that exist) n's working set
// (pings every 200 ms until each has answered, then 5 s more), restarts
// n's agent (SIGTERM, then a new one) and times until every node in set
// answers a ping again (looked at every 100 ms).
func measureRestart(b *testing.B, k *labtest.KubeCluster, n *netlab.Node, set []int, p *bench.ScalePoint) {
	pg := newPinger(b, n, 0x5800)
	answered := map[int]bool{}
	deadline, warm := time.Now().Add(30*time.Second), time.Time{}
	for warm.IsZero() || time.Since(warm) < 5*time.Second {
		if time.Now().After(deadline) {
			b.Fatalf("N=%d: %d of %d generated nodes do not answer node1 within 30 s", p.Nodes, len(set)-len(answered), len(set))
		}
		got, _ := pg.round(set, 200*time.Millisecond)
		for _, i := range got {
			answered[i] = true
		}
		if warm.IsZero() && len(answered) == len(set) {
			warm = time.Now()
		}
	}
	k.Agents[n.Name].Stop()
	t0 := time.Now()
	startAgent(k, n)
	waiting := slices.Clone(set)
	for len(waiting) > 0 {
		if time.Since(t0) > time.Minute {
			b.Fatalf("N=%d: %d of node1's working set of %d do not answer a minute after its agent restarted", p.Nodes, len(waiting), len(set))
		}
		got, still := pg.round(waiting, 100*time.Millisecond)
		if len(got) > 0 {
			p.StartActiveMillis = float64(time.Since(t0).Milliseconds())
		}
		waiting = still
	}
	b.Logf("N=%d: node1's agent restarted: its working set of %d all answered %.1f s after the start", p.Nodes, len(set), p.StartActiveMillis/1000)
	if os.Getenv("WEFT_SCALE_DEBUG") != "" {
		b.Logf("restarted agent:\n%s", k.Agents[n.Name].Output())
	}
}
