package labtest

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// WaitCNIConf waits for the agent on n to write its conflist (it does so
// only once its mesh is ready).
func (c *Cluster) WaitCNIConf(n *netlab.Node) {
	c.T.Helper()
	if err := n.WaitCNIConf(context.Background(), 20*time.Second); err != nil {
		c.T.Fatal(err)
	}
}

// NewPodCluster is a cluster whose agents have formed the mesh and written
// their CNI configs, ready for pods.
func NewPodCluster(t *testing.T, nodes int) *Cluster {
	t.Helper()
	return NewPodClusterWith(t, nodes)
}

// NewPodClusterWith is NewPodCluster with extra flags for every agent
// (Cluster.Extra), the ones started later included.
func NewPodClusterWith(t *testing.T, nodes int, extra ...string) *Cluster {
	t.Helper()
	c := NewCluster(t, nodes)
	c.Extra = extra
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	for _, n := range c.Lab.Nodes() {
		c.WaitCNIConf(n)
	}
	return c
}

// AddPod attaches a pod on n through libcni and removes it at cleanup.
func (c *Cluster) AddPod(n *netlab.Node, name string) *netlab.Pod {
	c.T.Helper()
	p, err := n.AddPod(context.Background(), c.Bins, name)
	if err != nil {
		c.T.Fatal(err)
	}
	return p
}
