package gossip

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
)

// silentSeed returns a loopback address whose TCP port never completes a
// connection: a listener with a full accept queue, whose kernel drops
// every further SYN (a Node whose agent is gone, behind a firewall that
// drops). Nothing leaves the machine.
func silentSeed(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue until a connection no longer completes.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
		if i > 8 {
			t.Fatal("the listener's queue does not fill")
		}
	}
}

// TestStopDoesNotWaitForAJoin: an agent stopping while its gossip member
// tries to join a seed that does not answer returns at once, not after
// memberlist's 10 s TCP timeout (the shutdown of an agent alone in gossip,
// and so a rollout, waited for it).
func TestStopDoesNotWaitForAJoin(t *testing.T) {
	seed := silentSeed(t)
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	self := peer.NodeInfo{Name: "node1", PublicKey: key.PublicKey(), Endpoint: netip.MustParseAddrPort("127.0.0.1:51820"),
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	reg := peer.NewRegistry(self, false, peer.Bounds{}, nil)
	joins := make(chan struct{}, 16)
	g, err := Start(Config{Name: "node1", Bind: netip.MustParseAddr("127.0.0.1"), Port: 0, Profile: Standalone,
		Seeds: func() []string { joins <- struct{}{}; return []string{seed} }}, self, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-joins:
	case <-time.After(5 * time.Second):
		t.Fatal("no join was tried")
	}
	time.Sleep(200 * time.Millisecond) // the dial is under way
	start := time.Now()
	g.Stop(true)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Stop took %v with a join under way (memberlist's TCP timeout is 10 s)", took.Round(time.Millisecond))
	}
}
