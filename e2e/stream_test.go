package e2e

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// stream is one long TCP connection from a pod to a pod on another node;
// the receiver records the longest pause between two reads.
type stream struct {
	bytes atomic.Int64
	mu    sync.Mutex
	last  time.Time
	gap   time.Duration
	err   atomic.Value // first write or read error
	stop  chan struct{}
}

func startStream(t *testing.T, from, to *netlab.Pod) *stream {
	t.Helper()
	s := &stream{stop: make(chan struct{}), last: time.Now()}
	var ln net.Listener
	if err := to.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":9100")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			s.err.Store(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			now := time.Now()
			s.mu.Lock()
			if d := now.Sub(s.last); d > s.gap {
				s.gap = d
			}
			s.last = now
			s.mu.Unlock()
			s.bytes.Add(int64(n))
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.err.Store(err)
				}
				return
			}
		}
	}()
	var c net.Conn
	if err := from.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(to.Addr(false), 9100).String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer c.Close()
		chunk := make([]byte, 16<<10)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				s.err.Store(err)
				return
			}
			time.Sleep(time.Millisecond) // ~16 MB/s: a steady stream, not a benchmark
		}
	}()
	t.Cleanup(func() { close(s.stop) })
	return s
}

// across runs fn and returns the longest pause the stream had from its
// start until it has carried 4 MB more after fn returned.
func (s *stream) across(t *testing.T, what string, fn func()) time.Duration {
	t.Helper()
	s.mu.Lock()
	s.gap, s.last = 0, time.Now()
	s.mu.Unlock()
	fn()
	after := s.bytes.Load()
	eventually(t, 30*time.Second, "the stream flows again after "+what, func() bool {
		return s.bytes.Load() > after+4<<20
	})
	if err, _ := s.err.Load().(error); err != nil {
		t.Fatalf("the stream broke across %s: %v", what, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gap
}

// TestStreamSurvivesAgentRestarts: a pod-to-pod TCP stream across two
// nodes keeps its connection through kill -9 of the agent on either end
// (the persistent TUN holds the data plane) and through a rolling upgrade
// of the agent binary on each (SIGTERM, then a new binary); the longest
// pause of each is printed.
func TestStreamSurvivesAgentRestarts(t *testing.T) {
	c := newPodCluster(t, 2)
	n1, n2 := c.lab.Nodes()[0], c.lab.Nodes()[1]
	s := startStream(t, c.addPod(n1, "client"), c.addPod(n2, "server"))
	eventually(t, 10*time.Second, "the stream carries data", func() bool { return s.bytes.Load() > 4<<20 })

	next := filepath.Join(t.TempDir(), "weft-agent-next")
	b, err := os.ReadFile(filepath.Join(c.bins, "weft-agent"))
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
		{"kill -9 of the sending node's agent", n1, func(n *netlab.Node) { c.agents[n.Name].Kill(); c.start(n) }},
		{"kill -9 of the receiving node's agent", n2, func(n *netlab.Node) { c.agents[n.Name].Kill(); c.start(n) }},
		{"rolling upgrade of the sending node's agent", n1, func(n *netlab.Node) { c.agents[n.Name].Stop(); c.startBinary(n, next) }},
		{"rolling upgrade of the receiving node's agent", n2, func(n *netlab.Node) { c.agents[n.Name].Stop(); c.startBinary(n, next) }},
	}
	for _, st := range steps {
		gap := s.across(t, st.what, func() { st.fn(st.n) })
		t.Logf("%s: longest pause %v", st.what, gap.Round(time.Millisecond))
		if gap > 5*time.Second {
			t.Errorf("%s: the stream paused %v; want under 5 s", st.what, gap)
		}
		c.waitReady(st.n, 20*time.Second)
	}
	t.Logf("the stream carried %d MB on one connection", s.bytes.Load()>>20)
}

// startBinary starts n's agent from another binary (an upgrade).
func (c *cluster) startBinary(n *netlab.Node, bin string) {
	c.t.Helper()
	p, err := n.Start(bin, c.agentArgs(n)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.agents[n.Name] = p
}
