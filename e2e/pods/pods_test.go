package pods

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestPodsReachEachOtherAcrossNodes: one pod per node, attached by weft-cni
// through libcni; every pod reaches every other pod over IPv4 and IPv6, and
// every node reaches every remote pod.
func TestPodsReachEachOtherAcrossNodes(t *testing.T) {
	c := labtest.NewPodCluster(t, 3)
	var pods []*netlab.Pod
	for _, n := range c.Lab.Nodes() {
		pods = append(pods, c.AddPod(n, "web"))
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
	for _, n := range c.Lab.Nodes() {
		for _, p := range pods {
			for _, v6 := range []bool{false, true} {
				if !n.Ping(ctx, p.Addr(v6), 2, time.Second) {
					t.Errorf("node %s cannot reach pod on %s at %s", n.Name, p.Node.Name, p.Addr(v6))
				}
			}
		}
	}
}
