package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// soakDuration is how long the chaos runs: WEFT_SOAK (a Go duration; make
// soak sets minutes), 40 s by default (the short version make test runs).
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("WEFT_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("WEFT_SOAK=%q: %v", s, err)
		}
		return d
	}
	return 40 * time.Second
}

type soakPod struct {
	name string
	node *netlab.Node
	pod  *netlab.Pod
}

// TestChaosSoak: pods are added and deleted continuously on 3 nodes (Pod
// objects in the lab's real API server, sandboxes through libcni) while
// agents are killed with SIGKILL at random, the API server is stopped and
// started, and one node's underlay is cut and restored. Afterwards every
// live pod reaches every other, no address was handed out twice, GC leaves
// no reservation that no pod holds, every node has exactly its peers'
// routes and peers, and the agents' memory stayed bounded. The report
// prints each figure.
func TestChaosSoak(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)
	nodes := k.Lab.Nodes()
	for _, n := range nodes {
		k.WaitCNIConf(n)
	}
	ctx := context.Background()
	const ns = "soak"
	k.CreateNamespace(ns, nil)

	var (
		mu                                   sync.Mutex
		live                                 []*soakPod
		held                                 = map[string]string{} // address -> pod holding it
		adds, addFails, noObject, dels, dups int
		chaos                                []string
		peakRSS                              = map[string]float64{}
	)
	sampleRSS := func() {
		for name, p := range k.Agents {
			select {
			case <-p.Done():
				continue
			default:
			}
			if r := labtest.RssMiB(t, p.Pid()); r > peakRSS[name] {
				peakRSS[name] = r
			}
		}
	}
	addPod := func(i int) {
		n := nodes[rand.IntN(len(nodes))]
		name := fmt.Sprintf("p%d", i)
		pods := k.Cp.Admin.CoreV1().Pods(ns)
		obj, err := pods.Create(ctx, labtest.NpPodObject(ns, name, n.Name), metav1.CreateOptions{})
		if err != nil {
			mu.Lock()
			noObject++
			mu.Unlock()
			return // the API server is away: no kubelet would start the pod either
		}
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := n.AddKubePod(actx, k.Bins, ns, name)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			addFails++
			if p != nil {
				_ = p.Delete(ctx, k.Bins) // the runtime answers a failed ADD with DEL
			}
			_ = pods.Delete(ctx, name, metav1.DeleteOptions{})
			return
		}
		adds++
		for _, v6 := range []bool{false, true} {
			a := p.Addr(v6).String()
			if other, ok := held[a]; ok {
				dups++
				t.Errorf("address %s handed to %s while %s holds it", a, name, other)
			}
			held[a] = name
		}
		live = append(live, &soakPod{name: name, node: n, pod: p})
		_ = k.SetRunning(obj, p) // the API server may be away: the pod runs all the same
	}
	delPod := func() {
		mu.Lock()
		if len(live) == 0 {
			mu.Unlock()
			return
		}
		i := rand.IntN(len(live))
		sp := live[i]
		live = slices.Delete(live, i, i+1)
		for _, v6 := range []bool{false, true} {
			delete(held, sp.pod.Addr(v6).String())
		}
		dels++
		mu.Unlock()
		if err := sp.pod.Delete(ctx, k.Bins); err != nil {
			t.Errorf("DEL %s: %v", sp.name, err)
		}
		_ = k.Cp.Admin.CoreV1().Pods(ns).Delete(ctx, sp.name, metav1.DeleteOptions{})
	}

	dur := soakDuration(t)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // pods
		defer wg.Done()
		for i := 0; time.Now().Before(deadline); i++ {
			mu.Lock()
			n := len(live)
			mu.Unlock()
			if n < 4 || n < 12 && rand.IntN(2) == 0 {
				addPod(i)
			} else {
				delPod()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	go func() { // chaos
		defer wg.Done()
		record := func(s string) { mu.Lock(); chaos = append(chaos, s); mu.Unlock() }
		for round := 0; time.Now().Before(deadline.Add(-5 * time.Second)); round++ {
			sampleRSS()
			n := nodes[rand.IntN(len(nodes))]
			switch round % 3 {
			case 0:
				record("kill -9 " + n.Name)
				k.Agents[n.Name].Kill()
				time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
				k.StartKube(n)
			case 1:
				record("API server down")
				k.Cp.APIServer.Stop()
				time.Sleep(4 * time.Second)
				if err := k.Cp.StartAPIServer(); err != nil {
					t.Errorf("restart API server: %v", err)
				}
				if err := k.Cp.WaitReady(ctx, 60*time.Second); err != nil {
					t.Errorf("API server: %v", err)
				}
			case 2:
				record("underlay cut " + n.Name)
				_, _ = n.Run(ctx, "ip", "link", "set", "eth0", "down")
				time.Sleep(4 * time.Second)
				_, _ = n.Run(ctx, "ip", "link", "set", "eth0", "up")
			}
			time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
		}
	}()
	wg.Wait()
	sampleRSS()

	// Settle: every agent up and meshed.
	k.WaitMesh(60 * time.Second)
	for _, n := range nodes {
		k.WaitReady(n, 30*time.Second)
	}

	// Every live pod reaches every other (IPv4), across and within nodes.
	unreachable := 0
	for _, a := range live {
		for _, b := range live {
			if a == b {
				continue
			}
			ok := false
			for try := 0; try < 10 && !ok; try++ {
				ok = a.pod.Ping(ctx, b.pod.Addr(false), 1)
			}
			if !ok {
				unreachable++
				t.Errorf("%s on %s cannot reach %s on %s", a.name, a.node.Name, b.name, b.node.Name)
			}
		}
	}

	// GC with the runtime's list: what remains must be exactly the live pods'.
	leaked := 0
	for _, n := range nodes {
		var valid []types.GCAttachment
		var want []string
		for _, sp := range live {
			if sp.node == n {
				valid = append(valid, types.GCAttachment{ContainerID: sp.pod.ContainerID, IfName: sp.pod.IfName})
				want = append(want, labtest.SortedAddrs(sp.pod)...)
			}
		}
		cniConf, list, err := n.CNI(k.Bins)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Do(func() error {
			return cniConf.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
		}); err != nil {
			t.Fatalf("GC on %s: %v", n.Name, err)
		}
		slices.Sort(want)
		got := labtest.Reservations(t, n)
		for _, a := range got {
			if _, ok := slices.BinarySearch(want, a); !ok {
				leaked++
				t.Errorf("%s: reservation %s held by no live pod after GC", n.Name, a)
			}
		}
		for _, a := range want {
			if _, ok := slices.BinarySearch(got, a); !ok {
				t.Errorf("%s: live pod address %s has no reservation", n.Name, a)
			}
		}
	}

	// Exactly the peers' routes and peers.
	stale := 0
	for _, n := range nodes {
		routes := labtest.WeftRoutes(t, n)
		var want []string
		for _, o := range nodes {
			if o != n {
				want = append(want, o.PodCIDRs[0].String(), o.PodCIDRs[1].String())
			}
		}
		for _, r := range routes {
			if !slices.ContainsFunc(want, func(p string) bool { return strings.HasPrefix(r, p+" ") }) {
				stale++
				t.Errorf("%s: stale route %q", n.Name, r)
			}
		}
		if len(routes) != len(want) {
			t.Errorf("%s: %d weft routes, want %d:\n%s", n.Name, len(routes), len(want), strings.Join(routes, "\n"))
		}
		names, err := n.PeerNames(ctx, k.Bins)
		if err != nil || len(names) != len(nodes)-1 {
			stale++
			t.Errorf("%s: peers %v (%v), want the %d other nodes", n.Name, names, err, len(nodes)-1)
		}
	}

	maxRSS := 0.0
	for name, r := range peakRSS {
		maxRSS = max(maxRSS, r)
		t.Logf("soak: agent %s peak RSS %.0f MiB", name, r)
	}
	t.Logf("soak: %v of chaos: %d events (%s)", dur, len(chaos), strings.Join(chaos, ", "))
	t.Logf("soak: pods added %d, ADDs failed (the agent or the API server away; undone by DEL) %d, not created (API server away) %d, deleted %d, live at the end %d",
		adds, addFails, noObject, dels, len(live))
	t.Logf("soak: unreachable live pod pairs %d, addresses handed out twice %d, reservations leaked after GC %d, stale routes or peers %d, max agent RSS %.0f MiB",
		unreachable, dups, leaked, stale, maxRSS)
	if maxRSS > 128 {
		t.Errorf("an agent reached %.0f MiB; want under 128 MiB", maxRSS)
	}
	if adds == 0 || len(chaos) < 3 {
		t.Fatalf("the soak did too little to prove anything: %d adds, %d chaos events", adds, len(chaos))
	}
}
