package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/weftnet/weft/agent/config"
	"github.com/weftnet/weft/api"
)

// inOwnNetns is set in the copy of this test binary that runs in a network
// namespace of its own.
const inOwnNetns = "WEFT_AGENT_TEST_NETNS"

// TestRunReturnsAndLeaksNothing: an agent that came up (ready: the device,
// gossip, the key exchange, nftables, the HTTP API and the control socket
// all running) returns from Run when its context ends, with nil, and leaves
// no goroutine behind. Run needs a network namespace (a TUN device, routes,
// nftables), and a Go program cannot move all its threads into one: the
// test runs this binary again under `unshare --net`.
func TestRunReturnsAndLeaksNothing(t *testing.T) {
	if os.Getenv(inOwnNetns) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root: a network namespace and a TUN device")
		}
		// A mount namespace too: wgctrl finds the device's socket only in
		// /run/wireguard, so this run's directory is bind-mounted there.
		cmd := exec.Command("unshare", "--net", "--mount", "sh", "-c", `mkdir -p /run/wireguard && mount --bind "$0" /run/wireguard && exec "$@"`,
			t.TempDir(), os.Args[0], "-test.run=^TestRunReturnsAndLeaksNothing$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), inOwnNetns+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in its own network namespace:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestRunReturnsAndLeaksNothing") {
			t.Fatalf("the agent's run in its own network namespace failed: %v", err)
		}
		return
	}
	underlay(t, "192.0.2.1/24")
	dir := t.TempDir()
	cfg, err := config.Parse([]string{"--node-name", "node1", "--pod-cidr", "10.244.1.0/24", "--insecure-gossip",
		"--advertise-address", "192.0.2.1", "--state-dir", filepath.Join(dir, "state"),
		"--cni-conf-dir", filepath.Join(dir, "cni"), "--http-addr", "127.0.0.1:9587", "--join", "192.0.2.9"},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("the agent's log:\n%s", logs.String())
		}
	}()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	ready := func() bool {
		r, err := client.Get("http://127.0.0.1:9587/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}
	for end := time.Now().Add(20 * time.Second); !ready(); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was ready: %v", err)
		default:
		}
		if time.Now().After(end) {
			t.Fatal("the agent was not ready after 20 s")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cni", api.ConfFile)); err != nil {
		t.Errorf("ready, but no CNI config: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended, want nil", err)
		}
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return 15 s after its context ended; its goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if _, err := net.Dial("tcp", "127.0.0.1:9587"); err == nil {
		t.Error("the HTTP port still answers after Run returned")
	}
}

// underlay gives this namespace its loopback and one underlay link holding
// addr, (the agent's advertise address).
func underlay(t *testing.T, addr string) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	// A veth pair (this kernel has no dummy links); its far end stays here.
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "underlay0", MTU: 1500}, PeerName: "underlay1"}
	if err := netlink.LinkAdd(d); err != nil {
		t.Fatalf("underlay link: %v", err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(d, a); err != nil {
		t.Fatalf("underlay address: %v", err)
	}
	for _, name := range []string{"underlay0", "underlay1"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("underlay %s up: %v", name, err)
		}
	}
}

// syncBuffer is a log the agent's goroutines write to and the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
