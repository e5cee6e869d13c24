package labtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// Status asks a node's agent for its status with weftctl, as an operator would.
func (c *Cluster) Status(n *netlab.Node) api.Status {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Run(ctx, filepath.Join(c.Bins, "weftctl"), "status", "-o", "json")
	if err != nil {
		c.T.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.T.Fatalf("weftctl status -o json: %v: %q", err, out)
	}
	return st
}

// PeerOf is the entry for name in st, or the zero value.
func PeerOf(st api.Status, name string) api.PeerStatus {
	for _, p := range st.Peers {
		if p.Name == name {
			return p
		}
	}
	return api.PeerStatus{}
}

// Capture records the underlay bridge until stop is called, then returns
// the tcpdump lines matching filter (read back from the file).
type Capture struct {
	T    *testing.T
	File string
	Cmd  *exec.Cmd
	Stop context.CancelFunc
}

func (c *Cluster) StartCapture(t *testing.T, name string) *Capture {
	t.Helper()
	pcap := filepath.Join(c.Lab.Dir, name+".pcap")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.Lab.Underlay, "tcpdump", "-i", "br0", "-U", "-n", "-s", "256", "-w", pcap)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "tcpdump listening", func() bool { return strings.Contains(stderr.String(), "listening on") })
	return &Capture{T: t, File: pcap, Cmd: cmd, Stop: cancel}
}

// Done stops the capture.
func (cp *Capture) Done() {
	time.Sleep(300 * time.Millisecond)
	cp.Cmd.Process.Signal(os.Interrupt)
	cp.Cmd.Wait()
	cp.Stop()
}

func (cp *Capture) Read(filter ...string) []string {
	cp.T.Helper()
	out, err := exec.Command("tcpdump", append([]string{"-r", cp.File, "-n"}, filter...)...).Output()
	if err != nil {
		cp.T.Fatalf("tcpdump -r %v: %v", filter, err)
	}
	return NonEmpty(strings.Split(string(out), "\n"))
}

// PingPods pings every pair of pods in both families and fails the test
// for a pair that does not answer.
func PingPods(t *testing.T, pairs [][2]*netlab.Pod) {
	t.Helper()
	for _, pr := range pairs {
		for _, v6 := range []bool{false, true} {
			// Up to 20 s: a pair's first handshake, or a direct route's
			// fallback to the tunnel, waits for the agents' next pass,
			// which a loaded machine delays.
			ok := false
			for end := time.Now().Add(20 * time.Second); !ok && time.Now().Before(end); {
				ok = pr[0].Ping(context.Background(), pr[1].Addr(v6), 1, "-s", "200")
			}
			if ok { // more traffic for a capture to see: 10 more, quickly (their replies do not matter)
				_ = pr[0].Command(context.Background(), "ping", "-n", "-q", "-c", "10", "-i", "0.05", "-W", "1", pr[1].Addr(v6).String()).Run()
			}
			if !ok {
				t.Errorf("pod on %s cannot reach pod on %s at %s", pr[0].Node.Name, pr[1].Node.Name, pr[1].Addr(v6))
			}
		}
	}
}

// kubeNodeBehind adds a node behind a router and registers its Node.
func (k *KubeCluster) AddNodeBehind(r netlab.Router) *netlab.Node {
	k.T.Helper()
	n, err := k.Lab.AddNodeBehind(fmt.Sprintf("node%d", len(k.Lab.Nodes())+1), r)
	if err != nil {
		k.T.Fatal(err)
	}
	if _, err := k.Cp.RegisterNode(context.Background(), n); err != nil {
		k.T.Fatal(err)
	}
	return n
}
