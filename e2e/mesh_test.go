package e2e

import (
	"testing"
	"time"

	"github.com/weftnet/weft/api"
)

// TestMeshForms: three agents find each other by gossip and every node reaches
// every other node's own pod-CIDR address, over IPv4 and IPv6.
func TestMeshForms(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	c.waitMesh(20 * time.Second)
	for _, from := range c.lab.Nodes() {
		for _, to := range c.lab.Nodes() {
			if from == to {
				continue
			}
			for _, p := range to.PodCIDRs {
				d := waitPing(t, from, api.FirstAddress(p), 10*time.Second)
				t.Logf("%s -> %s (%s): first reply after %v", from.Name, to.Name, api.FirstAddress(p), d.Round(time.Millisecond))
			}
		}
	}
}
