package labtest

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

// Cluster is a lab with a weft-agent per node.
type Cluster struct {
	T         testing.TB
	Lab       *netlab.Lab
	Bins      string
	GossipKey string
	Agents    map[string]*netlab.Proc
	Extra     []string // flags every agent runs with besides AgentArgs' own
}

func NewCluster(t testing.TB, nodes int) *Cluster {
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
	c := &Cluster{T: t, Lab: lab, Bins: bins, Agents: map[string]*netlab.Proc{}}
	if os.Getenv("WEFT_LAB_KEEP") == "1" {
		lab.Keep()
		t.Logf("lab directory kept: %s", lab.Dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range c.Agents {
				t.Logf("--- log of %s's agent:\n%s", name, Tail(p.Output(), 40))
			}
		}
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	if c.GossipKey, err = lab.WriteGossipKey(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		if _, err := lab.AddNode(fmt.Sprintf("node%d", i)); err != nil {
			t.Fatalf("add node: %v", err)
		}
	}
	return c
}

// AgentArgs are the flags a lab node's agent runs with; the first node is the seed.
// WEFT_LAB_DEBUG=1 runs them at debug level (wireguard-go's own messages).
func (c *Cluster) AgentArgs(n *netlab.Node) []string {
	args := append(n.AgentArgs(c.GossipKey, c.Lab.Nodes()[0]), c.Extra...)
	if os.Getenv("WEFT_LAB_DEBUG") == "1" {
		args = append(args, "--log-level", "debug")
	}
	return args
}

func (c *Cluster) Start(n *netlab.Node, extra ...string) *netlab.Proc {
	c.T.Helper()
	p, err := n.Start(filepath.Join(c.Bins, "weft-agent"), append(c.AgentArgs(n), extra...)...)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Agents[n.Name] = p
	return p
}

func (c *Cluster) StartAll() {
	for _, n := range c.Lab.Nodes() {
		c.Start(n)
	}
}

// Peers asks a node's agent for its peers with weftctl, as an operator would.
func (c *Cluster) Peers(n *netlab.Node) ([]api.PeerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Run(ctx, filepath.Join(c.Bins, "weftctl"), "peers", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ps []api.PeerStatus
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("weftctl peers -o json: %v: %q", err, out)
	}
	return ps, nil
}

// WaitMesh waits until every node lists every other node as a peer.
func (c *Cluster) WaitMesh(timeout time.Duration) {
	c.T.Helper()
	if err := c.Lab.WaitMesh(context.Background(), c.Bins, timeout); err != nil {
		c.T.Fatal(err)
	}
}

// WaitPing waits until from reaches dst, and returns how long that took.
func WaitPing(t *testing.T, from *netlab.Node, dst netip.Addr, timeout time.Duration) time.Duration {
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

func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FirstLine is the first line of s that contains sub, or "".
func FirstLine(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// Metric reads one sample of a node agent's /metrics (name with labels, as
// printed, e.g. `weft_reconciles_total{result="unchanged"}`).
func (c *Cluster) Metric(n *netlab.Node, series string) float64 {
	c.T.Helper()
	for _, s := range Metrics(c.T, n) {
		if s.Series == series {
			return s.Value
		}
	}
	c.T.Fatalf("%s has no metric %s", n.Name, series)
	return 0
}

// MetricSum adds up every sample of a metric family on n's agent.
func MetricSum(t testing.TB, n *netlab.Node, family string) float64 {
	t.Helper()
	sum, found := 0.0, false
	for _, s := range Metrics(t, n) {
		if rest, ok := strings.CutPrefix(s.Series, family); ok && (rest == "" || rest[0] == '{') {
			sum, found = sum+s.Value, true
		}
	}
	if !found {
		t.Fatalf("%s has no metric %s", n.Name, family)
	}
	return sum
}

// Sample is one line of the Prometheus text format: the series as printed
// (name and labels) and its value.
type Sample struct {
	Series string
	Value  float64
}

// Metrics reads every sample of n's agent's /metrics: the one parser of
// the lab tests.
func Metrics(t testing.TB, n *netlab.Node) []Sample {
	t.Helper()
	resp, err := n.HTTPClient().Get("http://" + netlab.AgentHTTP + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []Sample
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("metrics of %s: cannot read %q", n.Name, line)
		}
		out = append(out, Sample{line[:i], v})
	}
	return out
}

// Readyz is the status code of the node agent's /readyz (0 when it does
// not answer).
func Readyz(n *netlab.Node) int {
	resp, err := n.HTTPClient().Get("http://" + netlab.AgentHTTP + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// WaitReady waits for n's agent to report ready.
func (c *Cluster) WaitReady(n *netlab.Node, timeout time.Duration) {
	c.T.Helper()
	Eventually(c.T, timeout, n.Name+" ready", func() bool { return Readyz(n) == http.StatusOK })
}

// Eventually polls cond every 100ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
