package scale

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/bench"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/simpeer"
	"github.com/weftnet/weft/mesh"
)

// BenchmarkScale is make bench-scale: for each N in WEFT_SCALE_N (default
// 100,300,1000) a lab API server holds N Node objects, three of them with
// a real agent in Kubernetes mode and the rest generated: a key, a /29 pod
// CIDR, an endpoint in 10.97.0.0/16 (the nodes route that range to a
// host, the sink). The generated nodes are live (live_test.go: the sink
// answers their handshakes, key exchanges and pings, and each agent talks
// to a working set of them), or with WEFT_SCALE_LIVE=0 dead (the sink
// drops their packets, as a network drops packets to hosts that are
// down). It writes bench/results/scale-<time>.{json,md,svg}
// (WEFT_SCALE_OUT). The data plane is observed from outside the agents:
// a netlink route monitor in each node's namespace times every route the
// agent adds or removes.
func BenchmarkScale(b *testing.B) {
	sizes := []int{100, 300, 1000}
	if s := os.Getenv("WEFT_SCALE_N"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 4 || n > maxFakes-700 { // churn adds 600 more
				b.Fatalf("WEFT_SCALE_N: %q is not a size from 4 to %d", f, maxFakes-700)
			}
			sizes = append(sizes, n)
		}
	}
	out := os.Getenv("WEFT_SCALE_OUT")
	if out == "" {
		out = "../../bench/results"
	}
	if v := os.Getenv("WEFT_SCALE_ON_DEMAND"); v != "" && onDemandAfter() < time.Second {
		b.Fatalf("WEFT_SCALE_ON_DEMAND: %q is not a duration of 1s or more", v)
	}
	run := &bench.ScaleRun{OnDemandAfter: os.Getenv("WEFT_SCALE_ON_DEMAND"), Time: time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		Machine: fmt.Sprintf("%d cores, %s", runtime.NumCPU(), strings.TrimSpace(kernelRelease()))}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			p := measureScale(b, n)
			run.Sizes = append(run.Sizes, p)
			b.ReportMetric(p.ConvergeSeconds, "converge-s")
			b.ReportMetric(p.RSSMiB, "rss-MiB")
			b.ReportMetric(p.IdleCPUSteady, "idle-cpu-%")
			b.ReportMetric(p.ChurnP99Millis, "churn-p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
	if len(run.Sizes) == 0 {
		return // every size failed: nothing to report
	}
	md, err := bench.WriteScale(run, out)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("report written to %s:\n%s", out, md)
}

// planWrites are the peer writes a changed Node makes: the plan's (key
// rotations, rests and wakes write peers too, and live peers have them).
const planWrites = `weft_wireguard_peer_writes_total{cause="plan"}`

// onDemandAfter is WEFT_SCALE_ON_DEMAND (0: unset): the agents run with
// on-demand peers (--on-demand-after, no start grace), so the generated
// Nodes' peers leave the WireGuard device.
func onDemandAfter() time.Duration {
	d, err := time.ParseDuration(os.Getenv("WEFT_SCALE_ON_DEMAND"))
	if err != nil {
		return 0
	}
	return d
}

func onDemandArgs() []string {
	if d := onDemandAfter(); d > 0 {
		return []string{"--on-demand-after", d.String(), "--on-demand-grace", "0"}
	}
	return nil
}

// startAgent starts n's agent as bench-scale runs it: with pprof, the
// on-demand flags, and WEFT_SCALE_AGENT_ENV in its environment only
// (e.g. GOMEMLIMIT=72MiB, which the API server and etcd do not get).
func startAgent(k *labtest.KubeCluster, n *netlab.Node) *netlab.Proc {
	return k.StartKubeWith(n, strings.Fields(os.Getenv("WEFT_SCALE_AGENT_ENV")), append([]string{"--pprof-addr", netlab.AgentPprof}, onDemandArgs()...)...)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// Generated Nodes: index i has pod CIDR 10.244.(4+i/32).(8*(i%32))/29 (the
// real nodes hold 10.244.1-3.0/24; a /29 so that 8000 fit) and address
// 10.97.(i/250).(i%250+1).
const fakeRange = "10.97.0.0/16"

// maxFakes is how many generated Nodes the ranges hold (sizes and churn).
const maxFakes = (256 - 4) * 32

func fakeCIDR(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.244.%d.%d/29", 4+i/32, 8*(i%32)))
}

func fakeAddr(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("10.97.%d.%d", i/250, i%250+1))
}

func fakeNode(i int) (*corev1.Node, error) {
	k := fakeKey(i)
	a := fakeAddr(i).String()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fake-%04d", i), Labels: map[string]string{"kubernetes.io/hostname": fmt.Sprintf("fake-%04d", i)},
			Annotations: map[string]string{
				api.AnnotationPublicKey: k.PublicKey().String(), api.AnnotationEndpoint: a + ":51820",
				api.AnnotationGossipAddress: a + ":7946",
			}},
		Spec:   corev1.NodeSpec{PodCIDR: fakeCIDR(i).String(), PodCIDRs: []string{fakeCIDR(i).String()}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a}}},
	}, nil
}

// createFake creates generated Node i with its status (two requests, as a
// kubelet registers).
func createFake(ctx context.Context, c kubernetes.Interface, i int) error {
	n, err := fakeNode(i)
	if err != nil {
		return err
	}
	status := n.Status
	created, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status = status
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// routeWatch records the routes to pod ranges added and removed in one
// node's namespace, as the kernel announces them.
type routeWatch struct {
	mu      sync.Mutex
	added   map[netip.Prefix]time.Time // last add (or replace)
	removed map[netip.Prefix]time.Time // last delete
	events  int
	err     error
	done    chan struct{}
}

func watchRoutes(b testing.TB, n *netlab.Node) *routeWatch {
	h, err := netns.GetFromName(n.NS)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	w := &routeWatch{added: map[netip.Prefix]time.Time{}, removed: map[netip.Prefix]time.Time{}, done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 4096)
	cluster := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/48")}
	err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 16 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(w.done) })
	go func() {
		for u := range ch {
			now := time.Now()
			if u.Dst == nil || u.Table != unix.RT_TABLE_MAIN {
				continue
			}
			p, ok := netipPrefix(u.Dst)
			if !ok || !slices.ContainsFunc(cluster, func(c netip.Prefix) bool { return c.Overlaps(p) && c.Bits() <= p.Bits() }) {
				continue
			}
			w.mu.Lock()
			w.events++
			if u.Type == unix.RTM_DELROUTE {
				w.removed[p] = now
			} else {
				w.added[p] = now
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// state returns the event count and, for each prefix in ps, when it was
// last added (zero: not seen) or removed.
func (w *routeWatch) state(ps []netip.Prefix, del bool) (int, []time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Time, len(ps))
	m := w.added
	if del {
		m = w.removed
	}
	for i, p := range ps {
		out[i] = m[p]
	}
	return w.events, out, w.err
}

// cpuTicks is a process's user+system CPU time in clock ticks (100 Hz).
func cpuTicks(b testing.TB, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return u + k
}

// cpuPercent measures pids' CPU over d; it returns the highest, in % of one core.
func cpuPercent(b testing.TB, pids []int, d time.Duration) float64 {
	cpu, _ := cpuAndRSS(b, pids, d)
	return cpu
}

// cpuAndRSS is cpuPercent, and the most RSS any of them had in a reading
// each second over d: what the agent holds across its passes, not at
// one instant between them.
func cpuAndRSS(b testing.TB, pids []int, d time.Duration) (cpu, rss float64) {
	before := make([]float64, len(pids))
	for i, p := range pids {
		before[i] = cpuTicks(b, p)
	}
	start := time.Now()
	var each []string
	for time.Since(start) < d {
		time.Sleep(min(time.Second, d-time.Since(start)))
		now := 0.0
		for _, p := range pids {
			now = max(now, labtest.RssMiB(b, p))
		}
		rss = max(rss, now)
		each = append(each, fmt.Sprintf("%.0f", now))
	}
	b.Logf("RSS each second (MiB, the most of the agents): %s", strings.Join(each, " "))
	el := time.Since(start).Seconds()
	for i, p := range pids {
		cpu = max(cpu, (cpuTicks(b, p)-before[i])/100/el*100)
	}
	return cpu, rss
}

// runtimeLine is what n's Go runtime holds, read from its metrics (one
// scrape), beside its anonymous RSS: what the RSS is made of.
func runtimeLine(b testing.TB, n *netlab.Node, pid int) string {
	samples := labtest.Metrics(b, n)
	mib := func(m string) float64 {
		for _, s := range samples {
			if s.Series == m {
				return s.Value / (1 << 20)
			}
		}
		b.Fatalf("%s has no metric %s", n.Name, m)
		return 0
	}
	return fmt.Sprintf("heap in use %.1f MiB, freed but kept %.1f MiB (idle %.1f, released %.1f), next GC at %.1f MiB, stacks %.1f MiB, GC metadata %.1f MiB, other %.1f MiB; RSS anonymous %.1f MiB",
		mib("go_memstats_heap_inuse_bytes"), mib("go_memstats_heap_idle_bytes")-mib("go_memstats_heap_released_bytes"),
		mib("go_memstats_heap_idle_bytes"), mib("go_memstats_heap_released_bytes"), mib("go_memstats_next_gc_bytes"),
		mib("go_memstats_stack_inuse_bytes"), mib("go_memstats_gc_sys_bytes"), mib("go_memstats_other_sys_bytes"),
		labtest.StatusMiB(b, pid, "RssAnon"))
}

// scrape is what scrapeEvery saw: how many scrapes, the slowest, the
// largest answer, the first error.
type scrape struct {
	n       int
	slowest time.Duration
	bytes   int
	err     error
}

// scrapeEvery reads every node's /metrics as Prometheus does, first after
// 5 s then every interval, until d has passed.
func scrapeEvery(nodes []*netlab.Node, interval, d time.Duration) scrape {
	var sc scrape
	end := time.Now().Add(d)
	for next := time.Now().Add(5 * time.Second); next.Before(end); next = next.Add(interval) {
		time.Sleep(time.Until(next))
		for _, n := range nodes {
			start := time.Now()
			resp, err := n.HTTPClient().Get("http://" + netlab.AgentHTTP + "/metrics")
			if err != nil {
				sc.err = fmt.Errorf("scraping %s: %w", n.Name, err)
				return sc
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				sc.err = fmt.Errorf("scraping %s: %s %v", n.Name, resp.Status, err)
				return sc
			}
			sc.n++
			sc.slowest = max(sc.slowest, time.Since(start))
			sc.bytes = max(sc.bytes, len(body))
		}
	}
	return sc
}

func measureScale(b *testing.B, total int) bench.ScalePoint {
	ctx := context.Background()
	k := labtest.NewKubeCluster(b, 3)
	live := k.Lab.Nodes()
	p := bench.ScalePoint{Nodes: total}

	// The sink: nodes route the generated endpoints to it; it answers for
	// them (live) or drops them.
	sink, err := k.Lab.AddOutside()
	if err != nil {
		b.Fatal(err)
	}
	var sim *simpeer.Sim
	if liveFakes() {
		sim = startSim(b, sink)
	} else if out, err := sink.Run(ctx, "nft", "add table inet sink; add chain inet sink pre { type filter hook prerouting priority -300; policy accept; }; add rule inet sink pre ip daddr "+fakeRange+" drop"); err != nil {
		b.Fatalf("sink: %v %s", err, out)
	}
	for _, n := range live {
		if out, err := n.Run(ctx, "ip", "route", "add", fakeRange, "via", sink.Addr.String()); err != nil {
			b.Fatalf("route to the sink: %v %s", err, out)
		}
	}

	cfg := *k.Cp.AdminREST
	cfg.QPS, cfg.Burst = 1000, 1000
	admin, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	fakes := total - len(live)
	start := time.Now()
	parallel(b, fakes, 32, func(i int) error { return createFake(ctx, admin, i) })
	b.Logf("N=%d: %d Nodes created in %v", total, fakes, time.Since(start).Round(time.Millisecond))

	// Every node's pod ranges, as a peer routes them.
	var want []netip.Prefix
	wantOn := map[*netlab.Node][]netip.Prefix{}
	for i := range fakes {
		want = append(want, fakeCIDR(i))
	}
	watches := map[*netlab.Node]*routeWatch{}
	for _, n := range live {
		watches[n] = watchRoutes(b, n)
		ps := slices.Clone(want)
		for _, o := range live {
			if o != n {
				ps = append(ps, o.PodCIDRs...)
			}
		}
		wantOn[n] = ps
	}

	// Converge: start the agents, wait for every route on every node.
	t0 := time.Now()
	var pids []int
	for _, n := range live {
		pids = append(pids, startAgent(k, n).Pid())
	}
	for _, n := range live {
		var last time.Time
		labtest.Eventually(b, 10*time.Minute, fmt.Sprintf("%s routes all %d peers", n.Name, total-1), func() bool {
			_, at, err := watches[n].state(wantOn[n], false)
			if err != nil {
				b.Fatalf("route monitor on %s: %v", n.Name, err)
			}
			for _, t := range at {
				if t.IsZero() {
					return false
				}
				last = later(last, t)
			}
			return true
		})
		p.ConvergeSeconds = max(p.ConvergeSeconds, last.Sub(t0).Seconds())
		peers, err := n.Run(ctx, "wg", "show", "weft0", "peers")
		if err != nil {
			b.Fatal(err)
		}
		// On-demand peers may have left the device already.
		if got := len(strings.Fields(peers)) + int(labtest.MetricSum(b, n, "weft_peers_resting")); got != total-1 {
			b.Fatalf("%s has %d WireGuard peers on its device or resting, want %d", n.Name, got, total-1)
		}
	}
	b.Logf("N=%d: converged in %.1f s", total, p.ConvergeSeconds)
	// The agents gossip with each other before anything is read as rest:
	// a member joining later changes every agent's peers (their liveness),
	// a pass over all of them, in the middle of the steady minute. Among
	// 4997 Nodes without a gossip member that may take a while (joins draw
	// their seeds: agent/seeds.go); a real cluster's Nodes all run one.
	// Polled every second: a scrape is work at thousands of peers.
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
		met := true
		for _, n := range live {
			met = met && labtest.MetricSum(b, n, "weft_gossip_members") >= float64(len(live))
		}
		if met {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the agents do not gossip with each other 5 min after their start")
		}
	}
	p.GossipSeconds = time.Since(t0).Seconds()
	b.Logf("N=%d: the agents gossip with each other %.1f s after their start", total, p.GossipSeconds)

	// Idle: the first minute, then once dead peers rest.
	time.Sleep(5 * time.Second)
	p.IdleCPUFirstMinute = cpuPercent(b, pids, 60*time.Second)
	restMetric, restWithin := "weft_peers_dormant", mesh.DormantAfter+2*time.Minute
	if onDemandArgs() != nil {
		restMetric, restWithin = "weft_peers_resting", onDemandAfter()+2*time.Minute
	}
	if sim != nil {
		// Live peers shook hands at the start: they rest once that
		// handshake is older than WireGuard's Reject-After-Time.
		restWithin += 3 * time.Minute
	}
	resting := func() bool {
		for _, n := range live {
			if labtest.MetricSum(b, n, restMetric) < float64(fakes) {
				return false
			}
		}
		return true
	}
	// Polled every 5 s: a scrape of a thousand peers' series is work the
	// idle figure should not include.
	for deadline := time.Now().Add(restWithin); !resting(); time.Sleep(5 * time.Second) {
		if time.Now().After(deadline) {
			b.Fatalf("dead peers do not rest within %v (%s)", restWithin, restMetric)
		}
	}
	p.DormantPeers = fakes
	if dir := os.Getenv("WEFT_SCALE_PROFILES"); dir != "" {
		// node1's CPU during the steady window (30 of its 60 s) and heap.
		// What the steady window allocates: node1's heap before and after
		// it (go tool pprof -sample_index alloc_space -base
		// scale-N-heap-start.pprof scale-N-heap-end.pprof).
		saveProfile(b, live[0], "heap?gc=1", fmt.Sprintf("%s/scale-%d-heap-start.pprof", dir, total))
		go saveProfile(b, live[0], "profile?seconds=30", fmt.Sprintf("%s/scale-%d-cpu.pprof", dir, total))
	}
	// Prometheus scrapes every agent in the steady minute, as the chart's
	// ServiceMonitor does (every 30 s): its figures include what a scrape
	// costs.
	scraped := make(chan scrape, 1)
	go func() { scraped <- scrapeEvery(live, 30*time.Second, 60*time.Second) }()
	p.IdleCPUSteady, p.RSSSteadyMaxMiB = cpuAndRSS(b, pids, 60*time.Second)
	sc := <-scraped
	if sc.err != nil {
		b.Fatal(sc.err)
	}
	p.ScrapeMillis, p.ScrapeKB = sc.slowest.Seconds()*1000, float64(sc.bytes)/1000
	b.Logf("N=%d: %d scrapes of /metrics in the steady minute, the slowest %v, %d bytes", total, sc.n, sc.slowest, sc.bytes)
	worst := 0
	for i, n := range live {
		if rss := labtest.RssMiB(b, pids[i]); rss > p.RSSMiB {
			p.RSSMiB, worst = rss, i
		}
		p.RSSPeakMiB = max(p.RSSPeakMiB, labtest.StatusMiB(b, pids[i], "VmHWM"))
		p.HeapMiB = max(p.HeapMiB, labtest.MetricSum(b, n, "go_memstats_heap_inuse_bytes")/(1<<20))
	}
	// What that RSS is made of: the binary's pages, and the heap that is
	// live (a heap profile with gc=1 collects first, so it shows only what
	// is live, not the garbage of a pass the last collection met; taken
	// after the RSS is read).
	p.RSSFileMiB = labtest.StatusMiB(b, pids[worst], "RssFile")
	// What the runtime holds, read with the RSS (before the heap
	// profile, whose collection and encoding change it): what RSS is
	// made of.
	b.Logf("N=%d: runtime of the worst agent: %s", total, runtimeLine(b, live[worst], pids[worst]))
	heap := os.DevNull
	if dir := os.Getenv("WEFT_SCALE_PROFILES"); dir != "" { // after the RSS: a profile's collection changes it
		saveProfile(b, live[0], "heap?gc=1", fmt.Sprintf("%s/scale-%d-heap-end.pprof", dir, total))
		heap = fmt.Sprintf("%s/scale-%d-heap.pprof", dir, total)
	}
	saveProfile(b, live[worst], "heap?gc=1", heap)
	p.HeapLiveMiB = labtest.MetricSum(b, live[worst], "go_memstats_heap_alloc_bytes") / (1 << 20)
	b.Logf("N=%d: idle CPU first minute %.2f %%, steady %.2f %%, RSS %.1f MiB (file %.1f, peak %.1f), heap %.1f MiB (live %.1f)",
		total, p.IdleCPUFirstMinute, p.IdleCPUSteady, p.RSSMiB, p.RSSFileMiB, p.RSSPeakMiB, p.HeapMiB, p.HeapLiveMiB)
	if sim != nil {
		measureActive(b, live, pids, sim, fakes, &p)
	}

	// One Node added, then deleted.
	next := fakes
	oneChange := func(del bool) (writes, routes int, took time.Duration) {
		i := next
		ps := []netip.Prefix{fakeCIDR(i)}
		w0, r0 := map[*netlab.Node]float64{}, map[*netlab.Node]int{}
		for _, n := range live {
			w0[n] = labtest.MetricSum(b, n, planWrites)
			r0[n], _, _ = watches[n].state(nil, false)
		}
		start := time.Now()
		if del {
			if err := admin.CoreV1().Nodes().Delete(ctx, fmt.Sprintf("fake-%04d", i), metav1.DeleteOptions{}); err != nil {
				b.Fatal(err)
			}
		} else if err := createFake(ctx, admin, i); err != nil {
			b.Fatal(err)
		}
		for _, n := range live {
			labtest.Eventually(b, 30*time.Second, n.Name+" applies the change", func() bool {
				_, at, _ := watches[n].state(ps, del)
				if at[0].After(start) {
					took = max(took, at[0].Sub(start))
					return true
				}
				return false
			})
		}
		time.Sleep(3 * time.Second) // anything more it would write
		for _, n := range live {
			ev, _, _ := watches[n].state(nil, false)
			writes = max(writes, int(labtest.MetricSum(b, n, planWrites)-w0[n]))
			routes = max(routes, ev-r0[n])
		}
		return writes, routes, took
	}
	var took time.Duration
	p.AddPeerWrites, p.AddRouteChanges, took = oneChange(false)
	p.AddToRouteMillis = float64(took.Milliseconds())
	p.DelPeerWrites, p.DelRouteChanges, _ = oneChange(true)
	b.Logf("N=%d: one Node added: %d peer writes, %d route changes (%v to all 3); deleted: %d, %d",
		total, p.AddPeerWrites, p.AddRouteChanges, took, p.DelPeerWrites, p.DelRouteChanges)

	// Churn: every 50 ms a new Node or the deletion of the oldest one.
	p.ChurnSeconds, p.ChurnPerSecond = 60, 10
	type change struct {
		i   int
		del bool
		at  time.Time
	}
	var (
		changes []change
		mu      sync.Mutex
		wg      sync.WaitGroup
	)
	w0, r0, a0, wb0 := map[*netlab.Node]float64{}, map[*netlab.Node]int{}, map[*netlab.Node]float64{}, map[*netlab.Node]float64{}
	ps0, pc0 := map[*netlab.Node]float64{}, map[*netlab.Node]float64{}
	for _, n := range live {
		ps0[n] = labtest.MetricSum(b, n, "weft_reconcile_duration_seconds_sum")
		pc0[n] = labtest.MetricSum(b, n, "weft_reconcile_duration_seconds_count")
		w0[n] = labtest.MetricSum(b, n, planWrites)
		a0[n] = labtest.MetricSum(b, n, "weft_api_requests_total")
		wb0[n] = labtest.MetricSum(b, n, `weft_api_received_bytes_total{verb="watch"}`)
		r0[n], _, _ = watches[n].state(nil, false)
	}
	before := make([]float64, len(pids))
	for i, pid := range pids {
		before[i] = cpuTicks(b, pid)
	}
	oldest, added := 0, next+1
	if dir := os.Getenv("WEFT_SCALE_PROFILES"); dir != "" {
		// node1's CPU during the first half of the churn.
		go saveProfile(b, live[0], "profile?seconds=30", fmt.Sprintf("%s/scale-%d-churn-cpu.pprof", dir, total))
		// and where its time goes in 10 s of it (go tool trace -pprof=syscall).
		go saveProfile(b, live[0], "trace?seconds=10", fmt.Sprintf("%s/scale-%d-churn.trace", dir, total))
	}
	tick := time.NewTicker(time.Second / time.Duration(2*p.ChurnPerSecond))
	churnStart := time.Now()
	for j := 0; j < 2*p.ChurnPerSecond*p.ChurnSeconds; j++ {
		<-tick.C
		c := change{del: j%2 == 1}
		if c.del {
			if oldest == next { // deleted above
				oldest++
			}
			c.i, oldest = oldest, oldest+1
		} else {
			c.i, added = added, added+1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.at = time.Now()
			var err error
			if c.del {
				err = admin.CoreV1().Nodes().Delete(ctx, fmt.Sprintf("fake-%04d", c.i), metav1.DeleteOptions{})
			} else {
				err = createFake(ctx, admin, c.i)
			}
			if err != nil {
				b.Errorf("churn: %v", err)
				return
			}
			mu.Lock()
			changes = append(changes, c)
			mu.Unlock()
		}()
	}
	tick.Stop()
	wg.Wait()
	churnEl := time.Since(churnStart).Seconds()
	for i, pid := range pids {
		p.ChurnCPU = max(p.ChurnCPU, (cpuTicks(b, pid)-before[i])/100/churnEl*100)
	}
	time.Sleep(10 * time.Second) // stragglers
	p.ChurnChanges = len(changes)
	var lat []float64
	for _, n := range live {
		for _, del := range []bool{false, true} {
			var ps []netip.Prefix
			var at []time.Time
			for _, c := range changes {
				if c.del == del {
					ps, at = append(ps, fakeCIDR(c.i)), append(at, c.at)
				}
			}
			_, seen, err := watches[n].state(ps, del)
			if err != nil {
				b.Fatalf("route monitor on %s: %v", n.Name, err)
			}
			for j := range ps {
				if seen[j].Before(at[j]) {
					p.ChurnLost++
					continue
				}
				lat = append(lat, float64(seen[j].Sub(at[j]).Microseconds())/1000)
			}
		}
		ev, _, _ := watches[n].state(nil, false)
		p.ChurnPeerWrites = max(p.ChurnPeerWrites, (labtest.MetricSum(b, n, planWrites)-w0[n])/float64(len(changes)))
		p.ChurnRouteChanges = max(p.ChurnRouteChanges, float64(ev-r0[n])/float64(len(changes)))
		p.ChurnAPIRequestsSec = max(p.ChurnAPIRequestsSec, (labtest.MetricSum(b, n, "weft_api_requests_total")-a0[n])/churnEl)
		// The agent with the most passes, and its mean.
		if passes := labtest.MetricSum(b, n, "weft_reconcile_duration_seconds_count") - pc0[n]; passes/churnEl > p.ChurnPassesSec {
			p.ChurnPassesSec = passes / churnEl
			p.ChurnPassMillis = (labtest.MetricSum(b, n, "weft_reconcile_duration_seconds_sum") - ps0[n]) / passes * 1000
		}
		p.ChurnWatchKBSec = max(p.ChurnWatchKBSec, (labtest.MetricSum(b, n, `weft_api_received_bytes_total{verb="watch"}`)-wb0[n])/churnEl/1000)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		p.ChurnP50Millis = pct(lat, 0.50)
		p.ChurnP99Millis = pct(lat, 0.99)
		p.ChurnMaxMillis = lat[len(lat)-1]
	}
	b.Logf("N=%d: churn %d changes in %.1f s: CPU %.1f %%, %.2f API req/s, %.1f watch KB/s, %.1f passes/s of %.0f ms, %.2f peer writes and %.2f route changes per change, p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d never applied",
		total, p.ChurnChanges, churnEl, p.ChurnCPU, p.ChurnAPIRequestsSec, p.ChurnWatchKBSec, p.ChurnPassesSec, p.ChurnPassMillis, p.ChurnPeerWrites, p.ChurnRouteChanges, p.ChurnP50Millis, p.ChurnP99Millis, p.ChurnMaxMillis, p.ChurnLost)
	if sim != nil {
		// Last: a restarted agent disturbs every figure after it. Its
		// working set: the newest generated Nodes (the churn deleted the
		// oldest).
		var set []int
		for i := added - 1; len(set) < p.ActiveSet; i-- {
			set = append(set, i)
		}
		measureRestart(b, k, live[0], set, &p)
	}
	return p
}

// saveProfile writes n's agent's /debug/pprof/<what> to path.
func saveProfile(b testing.TB, n *netlab.Node, what, path string) {
	c := n.HTTPClient()
	c.Timeout = 2 * time.Minute
	resp, err := c.Get("http://" + netlab.AgentPprof + "/debug/pprof/" + what)
	if err != nil {
		b.Logf("profile %s: %v", what, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		b.Logf("profile %s: %v", what, err)
	}
}

func pct(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// parallel runs fn(0..n-1) on workers goroutines and fails b on the first error.
func parallel(b testing.TB, n, workers int, fn func(i int) error) {
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, n)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
