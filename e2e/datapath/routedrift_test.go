package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/mesh"
)

// TestRouteDriftRepairedAtOnce: a weft route that someone else deletes or
// replaces, or that the kernel drops with the tunnel link (IPv4 routes go
// without a notification), is written again at once: the agent follows
// the kernel's route and link notifications, it does not wait for its
// 30 s resync (which no longer lists the routes every pass). Each case
// waits 5 s, well under the resync, and then node1's pod reaches node2's.
func TestRouteDriftRepairedAtOnce(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	c.StartAll()
	c.WaitMesh(30 * time.Second)
	c.WaitCNIConf(n1)
	c.WaitCNIConf(n2)
	p1, p2 := c.AddPod(n1, "drift-1"), c.AddPod(n2, "drift-2")
	ctx := context.Background()
	// node1's weft route to node2's pod (IPv4).
	weftRoute := func() (string, bool) {
		out, err := n1.Run(ctx, "ip", "-4", "-o", "route", "show", "proto", fmt.Sprint(int(mesh.RouteProtocol)))
		if err != nil {
			t.Fatalf("ip route on node1: %v: %s", err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if p, err := netip.ParsePrefix(f[0]); err == nil && p.Contains(p2.Addr(false)) {
				return line, true
			}
		}
		return "", false
	}
	route, ok := weftRoute()
	if !ok {
		t.Fatal("node1 has no weft route to node2's pod")
	}
	dst := strings.Fields(route)[0]
	if !p1.Ping(ctx, p2.Addr(false), 5) {
		t.Fatal("node1's pod does not reach node2's before any drift")
	}
	// The agent's own writes (the mesh, the pods' routes beside it) are
	// not drift: nothing was read again for them.
	const drift = "weft's routes changed outside weft"
	if out := c.Agents[n1.Name].Output(); strings.Contains(out, drift) {
		t.Errorf("node1 saw drift before there was any:\n%s", out)
	}
	for _, tc := range []struct {
		name string
		undo [][]string // ip commands on node1
	}{
		{"deleted", [][]string{{"route", "del", dst}}},
		{"replaced by another owner's route", [][]string{{"route", "replace", dst, "dev", "lo"}}},
		{"dropped with the tunnel link set down and up", [][]string{{"link", "set", "weft0", "down"}, {"link", "set", "weft0", "up"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range tc.undo {
				if err := labtest.IpIn(n1.NS, args...); err != nil {
					t.Fatalf("ip %v: %v", args, err)
				}
			}
			labtest.Eventually(t, 5*time.Second, "node1's weft route to node2's pod is back", func() bool {
				line, ok := weftRoute()
				return ok && line == route
			})
			if !p1.Ping(ctx, p2.Addr(false), 5) {
				t.Error("node1's pod does not reach node2's once the route is back")
			}
			if !strings.Contains(c.Agents[n1.Name].Output(), drift) {
				t.Error("node1 did not log the drift")
			}
		})
	}
}
