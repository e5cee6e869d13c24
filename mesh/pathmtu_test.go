package mesh

import (
	"net/netip"
	"testing"
	"time"
)

// TestTooBigIsLookedAtAgain: a send was too big for a path the kernel has
// no MTU for yet (here one with no MTU at all, 192.0.2.1 of TEST-NET-1,
// asked of the kernel, never sent to); the record kicks the agent at once
// and again after pendingRetry until a Learn reads one or pendingFor ends.
func TestTooBigIsLookedAtAgain(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.1")
	if _, ok := PathMTU(addr); ok {
		t.Skip("this host has a path MTU recorded for 192.0.2.1")
	}
	p := NewPathMTUs()
	p.TooBig(netip.AddrFrom16(addr.As16())) // as a v4-mapped endpoint
	select {
	case <-p.Kick():
	default:
		t.Fatal("a too-big send did not kick")
	}
	if p.Learn(map[string]netip.Addr{"node3": addr}, 1420) {
		t.Fatal("Learn changed something without a path MTU")
	}
	if n := p.Unread(); n != 1 {
		t.Fatalf("%d reports unread, want 1", n)
	}
	select {
	case <-p.Kick():
	case <-time.After(3 * pendingRetry):
		t.Fatal("no second kick for an unread report")
	}
	p.mu.Lock()
	p.pending[addr] = time.Now().Add(-pendingFor - time.Second)
	p.mu.Unlock()
	p.Learn(map[string]netip.Addr{"node3": addr}, 1420)
	if n := p.Unread(); n != 0 {
		t.Fatalf("%d reports unread after %v, want 0", n, pendingFor)
	}
}
