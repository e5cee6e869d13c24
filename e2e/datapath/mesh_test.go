package datapath

import (
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
)

// TestMeshForms: three agents find each other by gossip and every node reaches
// every other node's own pod-CIDR address, over IPv4 and IPv6.
func TestMeshForms(t *testing.T) {
	c := labtest.NewCluster(t, 3)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	for _, from := range c.Lab.Nodes() {
		for _, to := range c.Lab.Nodes() {
			if from == to {
				continue
			}
			for _, p := range to.PodCIDRs {
				d := labtest.WaitPing(t, from, api.FirstAddress(p), 10*time.Second)
				t.Logf("%s -> %s (%s): first reply after %v", from.Name, to.Name, api.FirstAddress(p), d.Round(time.Millisecond))
			}
		}
	}
}
