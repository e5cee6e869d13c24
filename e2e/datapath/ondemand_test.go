package datapath

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestOnDemandPeersRestAndWake: with --on-demand-after, peers that carry
// nothing leave the WireGuard device (wg(8) lists none; their routes
// stay), and come back for the first packet, which is not lost: a pod's
// single ping to a pod on a resting peer is answered (node1 wakes node2 for
// the packet, node2 wakes node1 for its handshake), and a TCP connection
// from node3's pod to node1's completes without its SYN sent again (a
// lost SYN waits a 1 s retransmission). The pair's preshared key, agreed
// while the peers rested, is the one both devices hold afterwards.
func TestOnDemandPeersRestAndWake(t *testing.T) {
	c := onDemandCluster(t, 3, "--on-demand-after", "2s", "--on-demand-grace", "0")
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	p1, p2, p3 := c.AddPod(n1, "a"), c.AddPod(n2, "b"), c.AddPod(n3, "c")
	for _, n := range c.Lab.Nodes() {
		labtest.Eventually(t, 30*time.Second, n.Name+" rests both its peers", func() bool {
			return c.Metric(n, "weft_peers_resting") == 2
		})
		if rows := labtest.WgShow(t, n, "weft0", "peers"); len(rows) != 0 {
			t.Fatalf("%s's device still has peers while both rest: %v", n.Name, rows)
		}
	}
	// Peers rest from the start, so the pair's first key may be agreed
	// after: kept with the resting peer.
	labtest.Eventually(t, 10*time.Second, "node1's status says node2 rests, with the pair's key", func() bool { // a reading at most a second old
		st := labtest.PeerOf(c.Status(n1), "node2")
		return st.Resting && st.PresharedKey
	})
	if st := labtest.PeerOf(c.Status(n1), "node2"); !st.PresharedKey || st.LatestHandshake != "" {
		t.Errorf("node1's status of resting node2: preshared key %v (want the kept one), last handshake %q (want none)", st.PresharedKey, st.LatestHandshake)
	}

	rtt := pingOnce(t, p1, p2.Addr(false))
	t.Logf("the first ping from node1's pod to node2's, both ends resting: answered in %v", rtt)
	if rtt > time.Second {
		t.Errorf("the first packet to a resting peer took %v, want well under a second (one device write and one handshake)", rtt)
	}
	if c.Metric(n1, "weft_peers_resting") != 1 || c.Metric(n2, "weft_peers_resting") != 1 {
		t.Error("node1 and node2 still rest each other after the ping")
	}
	// The per-peer series are of the peers not resting: node2, not node3
	// (a reading at most a second old).
	var series []string
	want := []string{`weft_peer_mtu_bytes{peer="node2"}`}
	labtest.Eventually(t, 5*time.Second, "node1 exports the series of awake node2 and not of resting node3", func() bool {
		series = series[:0]
		for _, m := range labtest.Metrics(t, n1) {
			if strings.HasPrefix(m.Series, "weft_peer_mtu_bytes") {
				series = append(series, m.Series)
			}
		}
		return slices.Equal(series, want)
	})
	if w := c.Metric(n1, `weft_peer_wake_requests_total{cause="packet"}`); w < 1 {
		t.Errorf("node1 asked no wake for the ping (weft_peer_wake_requests_total{cause=\"packet\"} %v)", w)
	}
	if w, h := c.Metric(n2, "weft_peer_wakes_total"), c.Metric(n2, `weft_peer_wake_requests_total{cause="handshake"}`); w < 1 || h < 1 {
		t.Errorf("node2 woke %v peers, %v for a handshake; want node1 woken for its handshake", w, h)
	}
	if _, ok := labtest.PairKey(t, n1, n2); !ok {
		t.Error("node1 and node2 do not hold the same preshared key after the wake")
	}

	seen := labtest.ListenIn(t, p1.Do, "[::]:8080")
	before := labtest.TCPRetrans(t, p3)
	start := time.Now()
	if err := labtest.DialFrom(p3.Do, netip.AddrPortFrom(p1.Addr(false), 8080)); err != nil {
		t.Fatalf("node3's pod cannot connect to node1's (node1 and node3 resting): %v", err)
	}
	took := time.Since(start)
	select {
	case src := <-seen:
		if src != p3.Addr(false) {
			t.Errorf("node1's pod saw the connection from %s, want %s", src, p3.Addr(false))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("node1's pod accepted no connection")
	}
	if again := labtest.TCPRetrans(t, p3) - before; again != 0 || took >= time.Second {
		t.Errorf("the connection to a resting peer took %v with %d segments sent again: a packet was lost while it woke", took, again)
	}
	t.Logf("a TCP connection from node3's pod to node1's, both ends resting: %v", took)
	if d := c.Metric(n1, "weft_peer_wake_dropped_packets_total") + c.Metric(n3, "weft_peer_wake_dropped_packets_total"); d != 0 {
		t.Errorf("%v packets dropped while peers woke", d)
	}
}

// onDemandCluster starts a lab of n nodes whose agents run with flags
// (on-demand peers) and waits for each to be ready for pods. No WaitMesh:
// with on-demand peers there is no handshake until there is traffic.
func onDemandCluster(t *testing.T, n int, flags ...string) *labtest.Cluster {
	t.Helper()
	c := labtest.NewCluster(t, n)
	c.Extra = flags
	c.StartAll()
	for _, n := range c.Lab.Nodes() {
		c.WaitCNIConf(n)
	}
	return c
}

var rttField = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingOnce sends one ping and returns its round trip; the test fails
// when it is not answered.
func pingOnce(t *testing.T, from *netlab.Pod, dst netip.Addr) time.Duration {
	t.Helper()
	out, err := from.Command(context.Background(), "ping", "-n", "-c", "1", "-W", "5", dst.String()).CombinedOutput()
	m := rttField.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("one ping from %s to %s was not answered: %v\n%s", from.Name, dst, err, out)
	}
	ms, _ := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// TestOnDemandRestingSetSurvivesHandover: an upgrade (a new agent taking
// the data plane over) keeps resting peers resting: the successor's device
// has no peer and it never had to rest one (weft_peer_rests_total 0: it
// did not write them all back), and a pod's first ping still wakes both
// ends through it.
func TestOnDemandRestingSetSurvivesHandover(t *testing.T) {
	c := onDemandCluster(t, 2, "--on-demand-after", "2s", "--on-demand-grace", "0")
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	p1, p2 := c.AddPod(n1, "a"), c.AddPod(n2, "b")
	for _, n := range c.Lab.Nodes() {
		labtest.Eventually(t, 30*time.Second, n.Name+" rests its peer", func() bool {
			return c.Metric(n, "weft_peers_resting") == 1
		})
	}
	old := c.Agents[n1.Name]
	next := c.Start(n1)
	labtest.Eventually(t, 30*time.Second, "the new agent takes over on node1", func() bool {
		return strings.Contains(next.Output(), "took the data plane over")
	})
	c.WaitReady(n1, 20*time.Second)
	old.Stop()
	time.Sleep(time.Second) // a reconcile or two of the new agent
	if r, n := c.Metric(n1, "weft_peers_resting"), c.Metric(n1, "weft_peer_rests_total"); r != 1 || n != 0 {
		t.Fatalf("after the handover node1's new agent has %v peers resting and rested %v itself; want 1 handed over and 0", r, n)
	}
	if rows := labtest.WgShow(t, n1, "weft0", "peers"); len(rows) != 0 {
		t.Fatalf("node1's device has peers after the handover: %v", rows)
	}
	rtt := pingOnce(t, p1, p2.Addr(false))
	t.Logf("the first ping after the handover, both ends resting: answered in %v", rtt)
}

// TestOnDemandStartWritesOnlyTheAwake: with on-demand peers an agent puts
// on its device at the start only the peers its last run had there (its
// awake record). On a first start that is none: each node rests both its
// peers at once, though --on-demand-after is a minute away, without ever
// having written them (weft_peer_rests_total 0). A pod's ping then wakes
// node2 on node1, and node1's agent is killed (kill -9) and started again:
// the new agent has node2, and only node2, on its device and shakes hands
// with it with no traffic at all, because node2 still holds a session with
// the killed agent and, left alone, would send into it until its own 15 s
// timeout. node2's pod reaches node1's at once.
func TestOnDemandStartWritesOnlyTheAwake(t *testing.T) {
	c := onDemandCluster(t, 3, "--on-demand-after", "1m")
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	p1, p2 := c.AddPod(n1, "a"), c.AddPod(n2, "b")
	for _, n := range c.Lab.Nodes() {
		labtest.Eventually(t, 10*time.Second, n.Name+" rests both its peers from the start", func() bool {
			return c.Metric(n, "weft_peers_resting") == 2
		})
		if rows := labtest.WgShow(t, n, "weft0", "peers"); len(rows) != 0 {
			t.Fatalf("%s's device has peers on a first start: %v", n.Name, rows)
		}
		if r := c.Metric(n, "weft_peer_rests_total"); r != 0 {
			t.Errorf("%s rested %v peers: its start wrote them to the device", n.Name, r)
		}
	}
	rtt := pingOnce(t, p1, p2.Addr(false))
	t.Logf("the first ping from node1's pod to node2's after a first start: %v", rtt)
	key2 := labtest.PeerOf(c.Status(n1), "node2").PublicKey
	record := filepath.Join(n1.StateDir, api.AwakeFile)
	labtest.Eventually(t, 5*time.Second, "node1's awake record names node2", func() bool {
		b, err := os.ReadFile(record)
		return err == nil && strings.Contains(string(b), key2)
	})

	c.Agents[n1.Name].Kill()
	killed := time.Now()
	c.Start(n1)
	var shook time.Duration
	labtest.Eventually(t, 10*time.Second, "node1's new agent shakes hands with node2, no traffic asking", func() bool {
		rows, err := labtest.WgRows(n1, "weft0", "latest-handshakes") // an error until the new device is up
		if err != nil {
			return false
		}
		for _, row := range rows {
			if len(row) == 2 && row[0] == key2 {
				// A new device: any handshake it shows is its own.
				if s, err := strconv.ParseInt(row[1], 10, 64); err == nil && s > 0 {
					shook = time.Since(killed)
					return true
				}
			}
		}
		return false
	})
	t.Logf("node1's agent killed and started again: a handshake with node2 within %v", shook.Round(time.Millisecond))
	if rows := labtest.WgShow(t, n1, "weft0", "peers"); len(rows) != 1 || rows[0][0] != key2 {
		t.Errorf("node1's device after the restart has peers %v; want node2's alone (%s)", rows, key2)
	}
	if r, n := c.Metric(n1, "weft_peers_resting"), c.Metric(n1, "weft_peer_rests_total"); r != 1 || n != 0 {
		t.Errorf("node1's new agent rests %v peers and rested %v itself; want node3 resting from the start and none rested", r, n)
	}
	rtt = pingOnce(t, p2, p1.Addr(false))
	t.Logf("node2's pod to node1's after the restart: %v", rtt)
	if rtt > time.Second {
		t.Errorf("node2's pod reached node1's in %v after node1's restart, want well under a second", rtt)
	}
}
