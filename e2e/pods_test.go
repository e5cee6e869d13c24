package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// waitCNIConf waits for the agent on n to write its conflist (it does so
// only once its mesh is ready).
func (c *cluster) waitCNIConf(n *netlab.Node) {
	c.t.Helper()
	if err := n.WaitCNIConf(context.Background(), 20*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// newPodCluster is a cluster whose agents have formed the mesh and written
// their CNI configs, ready for pods.
func newPodCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	c := newCluster(t, nodes)
	c.startAll()
	c.waitMesh(20 * time.Second)
	for _, n := range c.lab.Nodes() {
		c.waitCNIConf(n)
	}
	return c
}

// addPod attaches a pod on n through libcni and removes it at cleanup.
func (c *cluster) addPod(n *netlab.Node, name string) *netlab.Pod {
	c.t.Helper()
	p, err := n.AddPod(context.Background(), c.bins, name)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestPodsReachEachOtherAcrossNodes: one pod per node, attached by weft-cni
// through libcni; every pod reaches every other pod over IPv4 and IPv6, and
// every node reaches every remote pod.
func TestPodsReachEachOtherAcrossNodes(t *testing.T) {
	c := newPodCluster(t, 3)
	var pods []*netlab.Pod
	for _, n := range c.lab.Nodes() {
		pods = append(pods, c.addPod(n, "web"))
	}
	ctx := context.Background()
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			for _, v6 := range []bool{false, true} {
				dst := to.Addr(v6)
				if !dst.IsValid() {
					t.Fatalf("pod on %s has no %v address: %+v", to.Node.Name, map[bool]string{false: "IPv4", true: "IPv6"}[v6], to.Result)
				}
				ok := false
				for i := 0; i < 3 && !ok; i++ {
					ok = from.Ping(ctx, dst, 1)
				}
				if !ok {
					t.Errorf("pod on %s cannot reach pod on %s at %s", from.Node.Name, to.Node.Name, dst)
				}
			}
		}
	}
	for _, n := range c.lab.Nodes() {
		for _, p := range pods {
			for _, v6 := range []bool{false, true} {
				if !n.Ping(ctx, p.Addr(v6), 2, time.Second) {
					t.Errorf("node %s cannot reach pod on %s at %s", n.Name, p.Node.Name, p.Addr(v6))
				}
			}
		}
	}
}
