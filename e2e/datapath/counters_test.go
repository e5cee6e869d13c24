package datapath

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestTrafficCounters drives each of weft's proof-of-encryption counters
// with real packets and reads them as an operator does (status and
// metrics). node1 and node2 share location "a" with direct paths, node3 is
// in "b"; node1 runs --strict-encryption. Then a route someone adds (a
// /32 to node3's pod over the underlay, more specific than the tunnel's)
// sends pod traffic around the tunnel: node2 (not strict) leaks it and
// counts it as plaintext, node1 drops and counts it, and its plaintext
// stays 0.
func TestTrafficCounters(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	n1, n2, n3 := c.Lab.Nodes()[0], c.Lab.Nodes()[1], c.Lab.Nodes()[2]
	c.Start(n1, "--location", "a", "--intra-location", "direct", "--strict-encryption")
	c.Start(n2, "--location", "a", "--intra-location", "direct")
	c.Start(n3, "--location", "b", "--intra-location", "direct")
	c.WaitMesh(30 * time.Second)
	for _, n := range c.Lab.Nodes() {
		c.WaitCNIConf(n)
	}
	p1, p2, p3 := c.AddPod(n1, "count-1"), c.AddPod(n2, "count-2"), c.AddPod(n3, "count-3")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p3}, {p1, p2}, {p2, p3}})

	traffic := func(n *netlab.Node) api.Traffic {
		t.Helper()
		// The agent answers status from a reading at most 1 s old
		// (httpapi.statusTTL): wait that out, so the packets just sent count.
		time.Sleep(1100 * time.Millisecond)
		tr := c.Status(n).Node.Traffic
		if tr == nil {
			t.Fatalf("%s's status has no traffic counters", n.Name)
		}
		return *tr
	}
	ctx := context.Background()
	const pings = 10
	ping := func(p *netlab.Pod, dst *netlab.Pod, v6 bool) {
		p.Command(ctx, "ping", "-n", "-q", "-c", fmt.Sprint(pings), "-i", "0.05", "-W", "1", dst.Addr(v6).String()).Run()
	}
	grew := func(what string, before, after api.Count, atLeast uint64) {
		t.Helper()
		if after.Packets < before.Packets+atLeast || after.Bytes <= before.Bytes {
			t.Errorf("%s: %+v -> %+v, want at least %d more packets", what, before, after, atLeast)
		}
	}
	same := func(what string, before, after api.Count) {
		t.Helper()
		if after != before {
			t.Errorf("%s: %+v -> %+v, want unchanged", what, before, after)
		}
	}

	// Through the tunnel (node1 -> node3, both families).
	before := traffic(n1)
	ping(p1, p3, false)
	ping(p1, p3, true)
	after := traffic(n1)
	grew("node1's tunnel counter over 2 × 10 pings to node3's pod", before.Tunnel, after.Tunnel, 2*pings)
	same("node1's direct counter while it pinged node3", before.Direct, after.Direct)

	// On the direct path (node1 -> node2, same location).
	before = traffic(n1)
	ping(p1, p2, false)
	after = traffic(n1)
	grew("node1's direct counter over 10 pings to node2's pod", before.Direct, after.Direct, pings)
	same("node1's tunnel counter while it pinged node2 directly", before.Tunnel, after.Tunnel)

	// Around the tunnel: a /32 to node3's pod on the underlay.
	leak := []string{"route", "add", p3.Addr(false).String() + "/32", "via", n3.Addr.String()}
	for _, n := range []*netlab.Node{n1, n2} {
		if err := labtest.IpIn(n.NS, leak...); err != nil {
			t.Fatalf("ip %v on %s: %v", leak, n.Name, err)
		}
	}
	b1, b2 := traffic(n1), traffic(n2)
	ping(p1, p3, false)
	ping(p2, p3, false)
	n2.Ping(ctx, p3.Addr(false), pings, time.Second)
	a1, a2 := traffic(n1), traffic(n2)
	grew("node2's plaintext counter (not strict: its pod and the node itself leak)", b2.Plaintext, a2.Plaintext, 2*pings)
	grew("node1's strict-drops counter (strict: its pod's packets are dropped)", b1.StrictDrops, a1.StrictDrops, pings)
	same("node1's plaintext counter (strict)", b1.Plaintext, a1.Plaintext)
	if a1.Plaintext.Packets != 0 {
		t.Errorf("node1 (strict) counted %d plaintext packets, want 0", a1.Plaintext.Packets)
	}
	for _, n := range []*netlab.Node{n1, n2} {
		if err := labtest.IpIn(n.NS, "route", "del", p3.Addr(false).String()+"/32"); err != nil {
			t.Fatalf("remove the leak route on %s: %v", n.Name, err)
		}
	}

	// The same figures as metrics.
	for _, m := range []struct {
		n      *netlab.Node
		series string
		min    float64
		max    float64
	}{
		{n1, `weft_pod_packets_total{path="tunnel"}`, 2 * pings, -1},
		{n1, `weft_pod_packets_total{path="direct"}`, pings, -1},
		{n1, `weft_pod_packets_total{path="plaintext"}`, 0, 0},
		{n1, `weft_dropped_packets_total{reason="strict"}`, pings, -1},
		{n2, `weft_pod_packets_total{path="plaintext"}`, 2 * pings, -1},
		{n3, `weft_pod_packets_total{path="plaintext"}`, 0, 0},
	} {
		v := c.Metric(m.n, m.series)
		if v < m.min || (m.max >= 0 && v > m.max) {
			t.Errorf("%s %s = %v, want %v..%v (-1: no bound)", m.n.Name, m.series, v, m.min, m.max)
		}
	}
	t.Logf("node1: %+v", traffic(n1))
	t.Logf("node2: %+v", traffic(n2))
}
