package hardening

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// These tests perform the attacks of the hardening review (issue 15) and
// assert what a user would notice: the agent's memory, its answers, the
// routes and rules on the node. Each failed on the main branch before the
// fix.

// peakRSS samples pid's RSS every 50ms until stop is closed.
func peakRSS(t testing.TB, pid int, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		peak := 0.0
		for {
			if r := labtest.RssMiB(t, pid); r > peak {
				peak = r
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return out
}

// floodGossip opens streams to the gossip port from inside do's namespace,
// each announcing a 20 MiB encrypted push/pull state (memberlist's own
// limit) and sending it: what made the agent read 20 MiB per stream
// before checking the key. It returns the bytes the agent accepted.
func floodGossip(do func(func() error) error, dst netip.AddrPort, streams int) int64 {
	const state = 20<<20 - 1
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = do(func() error {
				c, err := net.DialTimeout("tcp", dst.String(), 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(15 * time.Second))
				hdr := []byte{10, 0, 0, 0, 0} // memberlist's encryptMsg, then the length
				binary.BigEndian.PutUint32(hdr[1:], state)
				if _, err := c.Write(hdr); err != nil {
					return err
				}
				chunk := make([]byte, 256<<10)
				for n := 0; n < state; n += len(chunk) {
					w, err := c.Write(chunk)
					sent.Add(int64(w))
					if err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return sent.Load()
}

// TestGossipPortCannotBloatTheAgent: a pod cannot reach the gossip port at
// all, and a host-network sender (another node's namespace) opening 24
// streams of 20 MiB each raises the agent's memory by a bounded amount
// (on the main branch before the fix: 12 streams, +730 MB). Garbage UDP
// to the port is counted, and logged at most a few lines.
func TestGossipPortCannotBloatTheAgent(t *testing.T) {
	c := labtest.NewPodCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	pod := c.AddPod(n1, "attacker")
	agent := c.Agents[n1.Name]
	target := netip.AddrPortFrom(n1.Addr, 7946)

	if err := labtest.DialFrom(pod.Do, target); err == nil {
		t.Error("a pod connected to its node's gossip port; want it dropped")
	}
	if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(n2.Addr, 7946)); err == nil {
		t.Error("a pod connected to another node's gossip port through the tunnel; want it dropped")
	}
	for _, n := range []*netlab.Node{n1, n2} {
		if err := labtest.DialFrom(pod.Do, netip.AddrPortFrom(n.Addr, 51821)); err == nil {
			t.Errorf("a pod connected to %s's key exchange port; want it dropped", n.Name)
		}
	}

	before := labtest.RssMiB(t, agent.Pid())
	stop := make(chan struct{})
	peak := peakRSS(t, agent.Pid(), stop)
	sent := floodGossip(n2.Do, target, 24)
	close(stop)
	grew := <-peak - before
	t.Logf("agent RSS %.0f MiB before, +%.0f MiB at peak; the flood got %d MiB in", before, grew, sent>>20)
	if grew > 48 {
		t.Errorf("agent RSS grew by %.0f MiB under the gossip flood; want at most 48 MiB", grew)
	}
	if refused := c.Metric(n1, `weft_gossip_streams_refused_total{limit="streams-per-source"}`); refused == 0 {
		t.Error("no stream was refused for its source; the per-source bound did not act")
	}

	// Garbage datagrams: each is an error for memberlist, and a log line
	// only within the rate limit.
	logLines := func() int { return strings.Count(agent.Output(), `"component":"memberlist"`) }
	linesBefore := logLines()
	if err := n2.Do(func() error {
		conn, err := net.Dial("udp", target.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		b := make([]byte, 512)
		for range 3000 {
			_, _ = rand.Read(b)
			_, _ = conn.Write(b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, 5*time.Second, "bad packets counted", func() bool {
		return c.Metric(n1, `weft_gossip_log_lines_total{level="error"}`) >= 100
	})
	if n := logLines() - linesBefore; n > 12 {
		t.Errorf("3000 bad packets wrote %d memberlist log lines; want at most 12 (rate limited)", n)
	}
	c.WaitMesh(10 * time.Second)
}

// TestAgentHTTPBoundedForPods: with the HTTP server on every address (as
// the DaemonSet runs it), a pod holding hundreds of connections keeps
// only a few open, all of them closed within the header timeout, and the
// node's own health check answers throughout. Profiling is not served.
func TestAgentHTTPBoundedForPods(t *testing.T) {
	c := labtest.NewCluster(t, 1)
	n1 := c.Lab.Nodes()[0]
	c.Start(n1, "--http-addr", ":9587")
	c.WaitCNIConf(n1)
	pod := c.AddPod(n1, "attacker")
	target := netip.AddrPortFrom(api.FirstAddress(n1.PodCIDRs[0]), 9587)

	var conns []net.Conn
	if err := pod.Do(func() error {
		for range 300 {
			conn, err := net.DialTimeout("tcp", target.String(), 2*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, conn)
		}
		return nil
	}); err != nil {
		t.Fatalf("pod dialing the agent: %v", err)
	}
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	// What the server closed reads EOF at once; what it kept blocks.
	openNow := func() int {
		open := 0
		for _, conn := range conns {
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					open++
				}
			}
		}
		return open
	}
	time.Sleep(500 * time.Millisecond)
	if n := openNow(); n > 16 {
		t.Errorf("the agent kept %d of the pod's 300 idle connections; want at most 16", n)
	}
	start := time.Now()
	resp, err := n1.HTTPClient().Get("http://127.0.0.1:9587/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("node's health check while the pod holds connections: %v", err)
	}
	resp.Body.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("health check took %v", d)
	}
	labtest.Eventually(t, 10*time.Second, "the pod's idle connections closed by the server", func() bool { return openNow() == 0 })

	var status int
	if err := pod.Do(func() error {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + target.String() + "/debug/pprof/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		status = resp.StatusCode
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ from a pod: %d; want 404 (profiling is opt-in, on loopback)", status)
	}
	if c.Metric(n1, "weft_http_connections_refused_total") == 0 {
		t.Error("no connection counted as refused")
	}
}

// TestClaimsOutsideTheClusterAreRefused: a fourth agent holding the gossip
// key claims 8.0.0.0/8 as its pod range; the cluster's agents refuse it
// (counted), route nothing of it into the tunnel, and keep their mesh.
func TestClaimsOutsideTheClusterAreRefused(t *testing.T) {
	c := labtest.NewCluster(t, 4)
	nodes := c.Lab.Nodes()
	for _, n := range nodes[:3] {
		c.Start(n)
	}
	c.WaitMeshOf(nodes[:3], 20*time.Second)
	rogue := nodes[3]
	args := []string{"--node-name", "rogue", "--pod-cidr", "8.0.0.0/8", "--advertise-address", rogue.Addr.String(),
		"--join", nodes[0].Addr.String(), "--gossip-key-file", c.GossipKey, "--state-dir", rogue.StateDir,
		"--cni-conf-dir", rogue.CNIConfDir, "--http-addr", netlab.AgentHTTP}
	p, err := rogue.Start(c.Bins+"/weft-agent", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.Agents["rogue"] = p
	for _, n := range nodes[:3] {
		labtest.Eventually(t, 20*time.Second, n.Name+" refuses the rogue claim", func() bool {
			return c.Metric(n, `weft_peer_rejections_total{reason="outside-cluster-cidr"}`) >= 1
		})
		out, err := n.Run(context.Background(), "ip", "route", "show", "table", "all", "match", "8.8.8.8")
		if err != nil || strings.Contains(out, "weft0") {
			t.Errorf("%s routes 8.8.8.8 into the tunnel (%v): %s", n.Name, err, out)
		}
		peers, err := c.Peers(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, ps := range peers {
			if ps.Name == "rogue" {
				t.Errorf("%s installed the rogue node as a peer: %+v", n.Name, ps)
			}
		}
	}
	c.WaitMeshOf(nodes[:3], 5*time.Second)
}

// TestRulesComeBackAfterFlush: `nft delete table inet weft` and then `nft
// flush ruleset` on a node; within the integrity interval anti-spoofing,
// the agent-port guard and egress NAT are in force again, without a
// restart.
func TestRulesComeBackAfterFlush(t *testing.T) {
	c := labtest.NewPodCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	a := c.AddPod(n1, "a")
	remote := c.AddPod(n2, "remote")
	ctx := context.Background()
	spoofed := "10.244.1.250"
	spoofReaches := func() bool {
		_ = labtest.IpIn(a.NS, "addr", "add", spoofed+"/32", "dev", "eth0")
		defer labtest.IpIn(a.NS, "addr", "del", spoofed+"/32", "dev", "eth0")
		return a.Ping(ctx, remote.Addr(false), 0.5, "-I", spoofed)
	}
	if spoofReaches() {
		t.Fatal("a spoofed source passed before any flush")
	}
	for _, how := range [][]string{{"delete", "table", "inet", "weft"}, {"flush", "ruleset"}} {
		if out, err := n1.Run(ctx, "nft", how...); err != nil {
			t.Fatalf("nft %v: %v %s", how, err, out)
		}
		start := time.Now()
		labtest.Eventually(t, 25*time.Second, "weft's rules back after nft "+strings.Join(how, " "), func() bool {
			out, err := n1.Run(ctx, "nft", "list", "table", "inet", "weft")
			return err == nil && strings.Contains(out, "chain antispoof") && strings.Contains(out, "chain agent-ports") &&
				strings.Contains(out, "masquerade")
		})
		t.Logf("nft %s: rules back after %v", strings.Join(how, " "), time.Since(start).Round(100*time.Millisecond))
		if spoofReaches() {
			t.Errorf("after nft %s and the agent's repair, a spoofed source passes", strings.Join(how, " "))
		}
		if err := labtest.DialFrom(a.Do, netip.AddrPortFrom(n1.Addr, 7946)); err == nil {
			t.Errorf("after nft %s and the agent's repair, the pod reaches the gossip port", strings.Join(how, " "))
		}
		if !a.Ping(ctx, remote.Addr(false), 2) {
			t.Errorf("after nft %s, pod a cannot reach the remote pod", strings.Join(how, " "))
		}
	}
	if n := c.Metric(n1, "weft_nftables_reasserts_total"); n < 2 {
		t.Errorf("weft_nftables_reasserts_total = %v, want 2", n)
	}
}

// TestDuplicateAddKeepsTheLiveAttachment: a second ADD for an attachment
// that is up fails and changes nothing: the pod keeps its veth, its
// addresses and its connectivity (before the fix it lost its veth and its
// reservation, so the address could be handed out again).
func TestDuplicateAddKeepsTheLiveAttachment(t *testing.T) {
	c, n := labtest.OneNode(t)
	p := c.AddPod(n, "live")
	cniConf, list, err := n.CNI(c.Bins)
	if err != nil {
		t.Fatal(err)
	}
	resBefore, vethsBefore := labtest.Reservations(t, n), labtest.HostVeths(t, n)
	err = n.Do(func() error {
		_, err := cniConf.AddNetworkList(context.Background(), list, p.RuntimeConf())
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second ADD: %v; want it refused, the interface already exists", err)
	}
	if got := labtest.Reservations(t, n); !slices.Equal(got, resBefore) {
		t.Errorf("reservations %v after the refused ADD, want %v", got, resBefore)
	}
	if got := labtest.HostVeths(t, n); !slices.Equal(got, vethsBefore) {
		t.Errorf("host veths %v after the refused ADD, want %v", got, vethsBefore)
	}
	if !p.Ping(context.Background(), api.FirstAddress(n.PodCIDRs[0]), 2) {
		t.Error("the live pod lost connectivity")
	}
	// Its address is not handed out again.
	q := c.AddPod(n, "next")
	if slices.Contains(labtest.SortedAddrs(p), q.Addr(false).String()) {
		t.Errorf("the next pod got %s, the live pod's address", q.Addr(false))
	}
}

// TestGCRemovesOnlyItsOwnVeths: GC removes the veths of attachments this
// network held and the runtime no longer lists, not every wv* veth on the
// node (another network's, or one a concurrent ADD is setting up).
func TestGCRemovesOnlyItsOwnVeths(t *testing.T) {
	c, n := labtest.OneNode(t)
	keep, gone := c.AddPod(n, "keep"), c.AddPod(n, "gone")
	const foreign = "wv0123456789abc"
	if out, err := n.Run(context.Background(), "ip", "link", "add", foreign, "type", "veth", "peer", "name", "foreign-peer"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cniConf, list, err := n.CNI(c.Bins)
	if err != nil {
		t.Fatal(err)
	}
	valid := []types.GCAttachment{{ContainerID: keep.ContainerID, IfName: keep.IfName}}
	if err := n.Do(func() error {
		return cniConf.GCNetworkList(context.Background(), list, &libcni.GCArgs{ValidAttachments: valid})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	got := labtest.HostVeths(t, n)
	want := []string{foreign, keep.Result.Interfaces[0].Name}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after GC host veths are %v, want %v (the foreign one kept, %s's removed)", got, want, gone.Name)
	}
}

// TestPodTrafficToPort51820IsTracked: a pod's UDP to an outside host's port
// 51820 (a pod running its own WireGuard client) is masqueraded like any
// egress. Before the fix the transport notrack rule matched any packet to
// that port number, so the pod's traffic left un-NATed and got no answer.
func TestPodTrafficToPort51820IsTracked(t *testing.T) {
	c := labtest.NewCluster(t, 1)
	n1 := c.Lab.Nodes()[0]
	c.Start(n1)
	out, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	c.WaitCNIConf(n1)
	pod := c.AddPod(n1, "vpn-client")
	var ln net.PacketConn
	if err := out.Do(func() error {
		var err error
		ln, err = net.ListenPacket("udp", ":51820")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan netip.Addr, 1)
	go func() {
		buf := make([]byte, 64)
		n, from, err := ln.ReadFrom(buf)
		if err == nil {
			_, _ = ln.WriteTo(buf[:n], from) // echo
			seen <- from.(*net.UDPAddr).AddrPort().Addr().Unmap()
		}
	}()
	var reply bool
	if err := pod.Do(func() error {
		conn, err := net.Dial("udp", netip.AddrPortFrom(out.Addr, 51820).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte("handshake")); err != nil {
			return err
		}
		_, err = conn.Read(make([]byte, 64))
		reply = err == nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case src := <-seen:
		if src != n1.Addr {
			t.Errorf("the outside host saw %s, want node1's %s (masqueraded)", src, n1.Addr)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the outside host got nothing")
	}
	if !reply {
		t.Error("the pod got no answer from the outside host's port 51820")
	}
}
