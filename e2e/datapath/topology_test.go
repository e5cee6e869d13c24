package datapath

import (
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestDirectPathInsideALocation: node1 and node2 share location "a" and
// both run --intra-location=direct; node3 is in "b". Pods reach each other
// in both families; on the underlay, node1-node2 pod traffic is plain (the
// direct path) while anything to or from node3's pods is WireGuard only.
// When node2 falls back to encrypted, node1 follows: no plaintext at all.
func TestDirectPathInsideALocation(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	c.Start(n1, "--location", "a", "--intra-location", "direct")
	c.Start(n2, "--location", "a", "--intra-location", "direct")
	c.Start(n3, "--location", "b", "--intra-location", "direct")
	c.WaitMesh(30 * time.Second)
	for _, n := range c.Lab.Nodes() {
		c.WaitCNIConf(n)
	}
	st := c.Status(n1)
	if st.Node.Location != "a" || labtest.PeerOf(st, "node2").Path != "direct" || labtest.PeerOf(st, "node3").Path != "encrypted" ||
		labtest.PeerOf(st, "node3").Location != "b" {
		t.Fatalf("node1's status: %+v; want node2 direct and node3 (location b) encrypted", st)
	}
	checkGraph(t, c, n1)
	if v := c.Metric(n1, `weft_peer_path{location="a",path="direct",peer="node2"}`); v != 1 {
		t.Errorf("weft_peer_path for node2 = %v, want 1 (direct, location a)", v)
	}
	if v := c.Metric(n1, `weft_peer_path{location="b",path="encrypted",peer="node3"}`); v != 1 {
		t.Errorf("weft_peer_path for node3 = %v, want 1 (encrypted, location b)", v)
	}
	p1, p2, p3 := c.AddPod(n1, "a1"), c.AddPod(n2, "a2"), c.AddPod(n3, "b3")

	cp := c.StartCapture(t, "direct")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}, {p2, p1}, {p1, p3}, {p3, p2}})
	cp.Done()
	for _, v6 := range []bool{false, true} {
		plain := cp.Read("src", p1.Addr(v6).String(), "and", "dst", p2.Addr(v6).String())
		if len(plain) == 0 {
			t.Errorf("no plain packet from %s to %s on the underlay: the direct path was not taken", p1.Addr(v6), p2.Addr(v6))
		}
		for _, p := range []*netlab.Pod{p1, p2} {
			if leaked := cp.Read("host", p3.Addr(v6).String(), "and", "host", p.Addr(v6).String()); len(leaked) > 0 {
				t.Errorf("pod traffic across locations crossed the underlay in clear: %s", leaked[0])
			}
		}
	}
	if wg := cp.Read("udp", "port", "51820"); len(wg) == 0 {
		t.Error("no WireGuard packet on the underlay: node3's traffic did not take the tunnel")
	}

	// node2 now encrypts inside its location: both ends must fall back.
	c.Agents[n2.Name].Stop()
	c.Start(n2, "--location", "a", "--intra-location", "encrypted")
	labtest.Eventually(t, 20*time.Second, "node1 sees node2 as encrypted", func() bool {
		return labtest.PeerOf(c.Status(n1), "node2").Path == "encrypted"
	})
	c.WaitMesh(30 * time.Second)
	cp = c.StartCapture(t, "fallback")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}, {p2, p1}})
	cp.Done()
	if leaked := cp.Read("net", "10.244.0.0/16", "or", "net", "fd00:10:244::/48"); len(leaked) > 0 {
		t.Errorf("after node2 chose encrypted, pod traffic still crossed in clear: %s", leaked[0])
	}
}

// checkGraph renders node1's view with weftctl graph: the DOT has location
// a as a cluster holding node1 and node2, a direct edge between them and
// encrypted edges to node3; the SVG is well-formed XML naming every node.
// WEFT_GRAPH_OUT=FILE keeps the SVG (docs/mesh.svg comes from here).
func checkGraph(t *testing.T, c *labtest.Cluster, n *netlab.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dot, err := n.Run(ctx, filepath.Join(c.Bins, "weftctl"), "graph")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`subgraph "cluster_a"`, `"node1" -- "node2" [label="direct"`, `"node1" -- "node3" [label="encrypted"`, `"node2" -- "node3" [label="encrypted"`} {
		if !strings.Contains(dot, want) {
			t.Errorf("weftctl graph lacks %s:\n%s", want, dot)
		}
	}
	svg, err := n.Run(ctx, filepath.Join(c.Bins, "weftctl"), "graph", "-o", "svg")
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(svg))
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("weftctl graph -o svg is not well-formed XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			texts = append(texts, strings.TrimSpace(string(cd)))
		}
	}
	for _, want := range []string{"node1", "node2", "node3", "location a", "location b", "direct", "encrypted"} {
		if !slices.Contains(texts, want) {
			t.Errorf("the SVG has no text %q (has %v)", want, texts)
		}
	}
	if out := os.Getenv("WEFT_GRAPH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStrictEncryptionDropsWhenTheTunnelIsGone: node1 runs
// --strict-encryption, node2 does not. Both get a default route on the
// underlay towards node3 (which would even deliver the packets), then lose
// their tunnel (agent killed, weft0 deleted). node2's pod traffic to node3's
// pod leaks in clear; node1's, its pods' and its own, never reaches the wire.
func TestStrictEncryptionDropsWhenTheTunnelIsGone(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	c.Start(n1, "--strict-encryption")
	c.Start(n2)
	c.Start(n3)
	c.WaitMesh(30 * time.Second)
	for _, n := range c.Lab.Nodes() {
		c.WaitCNIConf(n)
	}
	if !c.Status(n1).Node.StrictEncryption {
		t.Fatal("node1's status does not say strict encryption")
	}
	p1, p2, p3 := c.AddPod(n1, "strict"), c.AddPod(n2, "loose"), c.AddPod(n3, "target")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p3}, {p2, p3}})

	for _, n := range []*netlab.Node{n1, n2} {
		for _, args := range [][]string{
			{"route", "add", "default", "via", n3.Addr.String()},
			{"-6", "route", "add", "default", "via", n3.Addr6.String()},
		} {
			if err := labtest.IpIn(n.NS, args...); err != nil {
				t.Fatalf("ip %v on %s: %v", args, n.Name, err)
			}
		}
		c.Agents[n.Name].Kill()
		if err := labtest.IpIn(n.NS, "link", "del", "weft0"); err != nil {
			t.Fatalf("delete weft0 on %s: %v", n.Name, err)
		}
	}
	cp := c.StartCapture(t, "strict")
	ctx := context.Background()
	for _, v6 := range []bool{false, true} {
		for _, p := range []*netlab.Pod{p1, p2} {
			p.Command(ctx, "ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "1", p3.Addr(v6).String()).Run()
		}
		n1.Ping(ctx, p3.Addr(v6), 5, time.Second)
	}
	cp.Done()
	for _, v6 := range []bool{false, true} {
		if leaked := cp.Read("src", p2.Addr(v6).String(), "and", "dst", p3.Addr(v6).String()); len(leaked) == 0 {
			t.Errorf("the control failed: node2 (not strict) did not leak %s -> %s, so the capture proves nothing", p2.Addr(v6), p3.Addr(v6))
		}
		if leaked := cp.Read("src", p1.Addr(v6).String()); len(leaked) > 0 {
			t.Errorf("strict node1's pod traffic crossed the underlay in clear: %s", leaked[0])
		}
		self := n1.Addr
		if v6 {
			self = n1.Addr6
		}
		if leaked := cp.Read("src", self.String(), "and", "dst", p3.Addr(v6).String()); len(leaked) > 0 {
			t.Errorf("strict node1's own traffic to a pod crossed the underlay in clear: %s", leaked[0])
		}
	}
}

// transfer sends size bytes over TCP from one pod to another's address
// and returns how long it took; it fails the test when not all arrive
// within timeout.
func transfer(t *testing.T, from, to *netlab.Pod, v6 bool, size int, timeout time.Duration) time.Duration {
	t.Helper()
	dst := to.Addr(v6)
	var ln net.Listener
	if err := to.Do(func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(dst.String(), "5201")); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	start := time.Now()
	var conn net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := from.Do(func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(dst.String(), "5201"))
		return err
	}); err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	conn.SetDeadline(time.Now().Add(timeout))
	_, werr := io.Copy(conn, io.LimitReader(zeros{}, int64(size)))
	conn.Close()
	n := <-got
	if werr != nil || n != int64(size) {
		t.Fatalf("%d of %d bytes from %s to %s arrived in %v (write: %v)", n, size, from.Addr(v6), dst, time.Since(start).Round(time.Millisecond), werr)
	}
	return time.Since(start)
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// TestPathMTUHopDoesNotBlackHole: node3 sits behind a router whose link to
// it carries 1280 bytes; node1's tunnel assumes 1500 on the underlay. A
// 10 MB transfer from a pod on node1 to a pod on node3 completes in both
// inner families, over an IPv4 and over an IPv6 underlay (before the fix
// every full-size packet was lost on EMSGSIZE: 2.4 of 10 MB in 60 s), and
// node1 reports the lowered MTU for node3.
func TestPathMTUHopDoesNotBlackHole(t *testing.T) {
	for _, underlay6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "IPv4 underlay", true: "IPv6 underlay"}[underlay6], func(t *testing.T) {
			c := labtest.NewCluster(t, 2)
			n3, err := c.Lab.AddNodeBehind("node3", netlab.Router{MTU: 1280})
			if err != nil {
				t.Fatal(err)
			}
			seed := c.Lab.Nodes()[0]
			for _, n := range c.Lab.Nodes() {
				args := c.AgentArgs(n)
				if underlay6 { // the IPv6 address first: it is the endpoint, gossip binds to it
					args = setFlag(args, "--advertise-address", n.Addr6.String()+","+n.Addr.String())
					args = setFlag(args, "--join", seed.Addr6.String())
				}
				p, err := n.Start(filepath.Join(c.Bins, "weft-agent"), args...)
				if err != nil {
					t.Fatal(err)
				}
				c.Agents[n.Name] = p
			}
			c.WaitMesh(30 * time.Second)
			for _, n := range c.Lab.Nodes() {
				c.WaitCNIConf(n)
			}
			n1 := c.Lab.Nodes()[0]
			if ep := labtest.PeerOf(c.Status(n1), "node3").Endpoint; underlay6 != strings.HasPrefix(ep, "[") {
				t.Fatalf("node1 reaches node3 at %s; want an IPv6 underlay %v", ep, underlay6)
			}
			p1, p3 := c.AddPod(n1, "sender"), c.AddPod(n3, "receiver")
			labtest.PingPods(t, [][2]*netlab.Pod{{p1, p3}})
			for _, v6 := range []bool{false, true} {
				d := transfer(t, p1, p3, v6, 10<<20, 60*time.Second)
				t.Logf("10 MB from node1's pod to node3's pod over the 1280 hop (inner IPv6 %v): %v", v6, d.Round(time.Millisecond))
			}
			// The learned MTU reaches the plan after the loop's next pass,
			// and the status reading is at most a second old.
			var m int
			var v float64
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if m, v = labtest.PeerOf(c.Status(n1), "node3").MTU, c.Metric(n1, `weft_peer_mtu_bytes{peer="node3"}`); m == 1200 && v == 1200 {
					break
				}
			}
			if m != 1200 || v != 1200 {
				t.Errorf("node1's MTU for node3 is %d (metric %v), want 1200 (the 1280 path less 80)", m, v)
			}
			if v := c.Metric(n1, `weft_peer_transmit_bytes_total{peer="node3"}`); v < 20<<20 {
				t.Errorf("weft_peer_transmit_bytes_total for node3 = %v, want over the 20 MB sent", v)
			}
		})
	}
}

// setFlag replaces the value of flag in args.
func setFlag(args []string, flag, value string) []string {
	out := slices.Clone(args)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

// TestNodeBehindNAT: node3's Node announces 10.98.3.2, which nobody on the
// underlay can reach (its router masquerades with random ports); its agent
// runs with --behind-nat. It still joins: it initiates, its peers answer
// where its handshakes come from, and a reconcile (SIGHUP) does not write
// the Node's endpoint over the learned one. Both directions carry traffic.
func TestNodeBehindNAT(t *testing.T) {
	k := labtest.NewKubeCluster(t, 2)
	n3 := k.AddNodeBehind(netlab.Router{NAT: true})
	for _, n := range k.Lab.Nodes() {
		var extra []string
		if n == n3 {
			extra = []string{"--behind-nat"}
		}
		k.StartKubeWith(n, nil, extra...)
	}
	k.WaitMesh(60 * time.Second)
	n1 := k.Lab.Nodes()[0]
	if got := k.Node("node3").Annotations[api.AnnotationBehindNAT]; got != "true" {
		t.Fatalf("node3's Node says %s=%q, want true", api.AnnotationBehindNAT, got)
	}
	for _, pair := range [][2]*netlab.Node{{n1, n3}, {n3, n1}} {
		for _, p := range pair[1].PodCIDRs {
			labtest.WaitPing(t, pair[0], api.FirstAddress(p), 10*time.Second)
		}
	}
	p := labtest.PeerOf(k.Status(n1), "node3")
	ep, err := netip.ParseAddrPort(p.Endpoint)
	if err != nil || ep.Addr().String() != "10.99.0.103" || p.AnnouncedEndpoint != "10.98.3.2:51820" {
		t.Fatalf("node1 reaches node3 at %s (announced %s); want the router's address 10.99.0.103", p.Endpoint, p.AnnouncedEndpoint)
	}
	k.Agents[n1.Name].Signal(syscall.SIGHUP)
	time.Sleep(2 * time.Second)
	if again := labtest.PeerOf(k.Status(n1), "node3"); again.Endpoint != p.Endpoint {
		t.Fatalf("a reconcile moved node3's endpoint from %s to %s", p.Endpoint, again.Endpoint)
	}
	for _, p := range n3.PodCIDRs {
		labtest.WaitPing(t, n1, api.FirstAddress(p), 5*time.Second)
	}
	t.Logf("node3 behind NAT: announced %s, reached at %s", p.AnnouncedEndpoint, p.Endpoint)
}

// TestKubeLocationsFromLabels: in Kubernetes a node's location is its
// topology label, or its weft.dev/location annotation when set. node1 and
// node2 share zone z1 and run direct; node3's label says z1 but its
// annotation z2, so it stays encrypted. The Nodes carry only IPv4
// addresses, so the IPv6 pod ranges stay in the tunnel even between direct
// peers. Relabelling node2 to z3 makes both ends encrypted, node2's own
// status included.
func TestKubeLocationsFromLabels(t *testing.T) {
	k := labtest.NewKubeCluster(t, 3)
	ctx := context.Background()
	for _, n := range k.Lab.Nodes() {
		node := k.Node(n.Name)
		node.Labels[api.DefaultTopologyLabel] = "z1"
		if n.Name == "node3" {
			node.Annotations = map[string]string{api.AnnotationLocation: "z2"}
		}
		if _, err := k.Cp.Admin.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range k.Lab.Nodes() {
		k.StartKubeWith(n, nil, "--intra-location", "direct")
	}
	k.WaitMesh(30 * time.Second)
	n1, n2 := k.Lab.Nodes()[0], k.Lab.Nodes()[1]
	st := k.Status(n1)
	if st.Node.Location != "z1" || labtest.PeerOf(st, "node2").Path != "direct" || labtest.PeerOf(st, "node3").Path != "encrypted" || labtest.PeerOf(st, "node3").Location != "z2" {
		t.Fatalf("node1's status %+v: want location z1, node2 direct, node3 in z2 encrypted", st)
	}
	if got := k.Node("node1").Annotations[api.AnnotationIntraLocation]; got != "direct" {
		t.Errorf("node1's Node says %s=%q, want direct", api.AnnotationIntraLocation, got)
	}
	for _, p := range n2.PodCIDRs {
		labtest.WaitPing(t, n1, api.FirstAddress(p), 10*time.Second)
	}
	node := k.Node("node2")
	node.Labels[api.DefaultTopologyLabel] = "z3"
	if _, err := k.Cp.Admin.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, 10*time.Second, "node1 and node2 both encrypted after the relabel", func() bool {
		return labtest.PeerOf(k.Status(n1), "node2").Path == "encrypted" && labtest.PeerOf(k.Status(n2), "node1").Path == "encrypted" &&
			k.Status(n2).Node.Location == "z3"
	})
	k.WaitMesh(30 * time.Second)
	for _, p := range n2.PodCIDRs {
		labtest.WaitPing(t, n1, api.FirstAddress(p), 10*time.Second)
	}
}
