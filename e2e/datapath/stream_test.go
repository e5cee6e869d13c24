package datapath

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestStreamSurvivesAgentRestarts: a pod-to-pod TCP stream across two
// nodes keeps its connection through kill -9 of the agent on either end
// (the persistent TUN holds the data plane) and through a rolling upgrade
// of the agent binary on each (SIGTERM, then a new binary); the longest
// pause of each is printed.
func TestStreamSurvivesAgentRestarts(t *testing.T) {
	c := labtest.NewPodCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	s := labtest.StartStream(t, c.AddPod(n1, "client"), c.AddPod(n2, "server"))
	labtest.Eventually(t, 10*time.Second, "the stream carries data", func() bool { return s.Bytes.Load() > 4<<20 })

	next := filepath.Join(t.TempDir(), "weft-agent-next")
	b, err := os.ReadFile(filepath.Join(c.Bins, "weft-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(next, b, 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		n    *netlab.Node
		fn   func(n *netlab.Node)
	}{
		{"kill -9 of the sending node's agent", n1, func(n *netlab.Node) { c.Agents[n.Name].Kill(); c.Start(n) }},
		{"kill -9 of the receiving node's agent", n2, func(n *netlab.Node) { c.Agents[n.Name].Kill(); c.Start(n) }},
		{"rolling upgrade of the sending node's agent", n1, func(n *netlab.Node) { c.Agents[n.Name].Stop(); c.StartBinary(n, next) }},
		{"rolling upgrade of the receiving node's agent", n2, func(n *netlab.Node) { c.Agents[n.Name].Stop(); c.StartBinary(n, next) }},
	}
	for _, st := range steps {
		gap := s.Across(t, st.what, func() { st.fn(st.n) })
		t.Logf("%s: longest pause %v", st.what, gap.Round(time.Millisecond))
		if gap > 5*time.Second {
			t.Errorf("%s: the stream paused %v; want under 5 s", st.what, gap)
		}
		c.WaitReady(st.n, 20*time.Second)
	}
	t.Logf("the stream carried %d MB on one connection", s.Bytes.Load()>>20)
}
