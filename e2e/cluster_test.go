package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// cluster is a lab with a weft-agent per node.
type cluster struct {
	t         testing.TB
	lab       *netlab.Lab
	bins      string
	gossipKey string
	agents    map[string]*netlab.Proc
}

func newCluster(t testing.TB, nodes int) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test: needs root and network namespaces; run without -short")
	}
	bins, err := netlab.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c := &cluster{t: t, lab: lab, bins: bins, agents: map[string]*netlab.Proc{}}
	if os.Getenv("WEFT_LAB_KEEP") == "1" {
		lab.Keep()
		t.Logf("lab directory kept: %s", lab.Dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range c.agents {
				t.Logf("--- log of %s's agent:\n%s", name, tail(p.Output(), 40))
			}
		}
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	if c.gossipKey, err = lab.WriteGossipKey(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		if _, err := lab.AddNode(fmt.Sprintf("node%d", i)); err != nil {
			t.Fatalf("add node: %v", err)
		}
	}
	return c
}

// agentArgs are the flags a lab node's agent runs with; the first node is the seed.
// WEFT_LAB_DEBUG=1 runs them at debug level (wireguard-go's own messages).
func (c *cluster) agentArgs(n *netlab.Node) []string {
	args := n.AgentArgs(c.gossipKey, c.lab.Nodes()[0])
	if os.Getenv("WEFT_LAB_DEBUG") == "1" {
		args = append(args, "--log-level", "debug")
	}
	return args
}

func (c *cluster) start(n *netlab.Node, extra ...string) *netlab.Proc {
	c.t.Helper()
	p, err := n.Start(filepath.Join(c.bins, "weft-agent"), append(c.agentArgs(n), extra...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.agents[n.Name] = p
	return p
}

func (c *cluster) startAll() {
	for _, n := range c.lab.Nodes() {
		c.start(n)
	}
}

// peers asks a node's agent for its peers with weftctl, as an operator would.
func (c *cluster) peers(n *netlab.Node) ([]api.PeerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Run(ctx, filepath.Join(c.bins, "weftctl"), "peers", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ps []api.PeerStatus
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("weftctl peers -o json: %v: %q", err, out)
	}
	return ps, nil
}

// waitMesh waits until every node lists every other node as a peer.
func (c *cluster) waitMesh(timeout time.Duration) {
	c.t.Helper()
	if err := c.lab.WaitMesh(context.Background(), c.bins, timeout); err != nil {
		c.t.Fatal(err)
	}
}

// waitPing waits until from reaches dst, and returns how long that took.
func waitPing(t *testing.T, from *netlab.Node, dst netip.Addr, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if from.Ping(context.Background(), dst, 1, 200*time.Millisecond) {
			return time.Since(start)
		}
	}
	t.Fatalf("%s cannot reach %s after %v", from.Name, dst, timeout)
	return 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metric reads one sample of a node agent's /metrics (name with labels, as
// printed, e.g. `weft_reconciles_total{result="unchanged"}`).
func (c *cluster) metric(n *netlab.Node, series string) float64 {
	c.t.Helper()
	resp, err := n.HTTPClient().Get("http://127.0.0.1:9587/metrics")
	if err != nil {
		c.t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				c.t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	c.t.Fatalf("%s has no metric %s", n.Name, series)
	return 0
}

// readyz is the status code of the node agent's /readyz (0 when it does
// not answer).
func readyz(n *netlab.Node) int {
	resp, err := n.HTTPClient().Get("http://" + netlab.AgentHTTP + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits for n's agent to report ready.
func (c *cluster) waitReady(n *netlab.Node, timeout time.Duration) {
	c.t.Helper()
	eventually(c.t, timeout, n.Name+" ready", func() bool { return readyz(n) == http.StatusOK })
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
