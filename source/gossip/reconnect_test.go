package gossip

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestFormerMembersAreBounded: a member that dies or leaves is remembered
// for reconnecting, at most maxFormer of them (the oldest forgotten first:
// a gossip flood of short-lived names costs bounded memory), itself never,
// and one that comes back is forgotten.
func TestFormerMembersAreBounded(t *testing.T) {
	g := &Source{name: "self", former: map[string]former{}}
	g.remember(&memberlist.Node{Name: "self", Addr: net.IPv4(10, 0, 0, 1), Port: 7946})
	if len(g.former) != 0 {
		t.Fatal("a node remembers itself as a former member")
	}
	for i := range maxFormer + 10 {
		g.remember(&memberlist.Node{Name: fmt.Sprintf("n%d", i), Addr: net.IPv4(10, 0, byte(i>>8), byte(i)), Port: 7946})
		g.former[fmt.Sprintf("n%d", i)] = former{g.former[fmt.Sprintf("n%d", i)].addr, time.Unix(int64(i), 0)}
	}
	if len(g.former) != maxFormer {
		t.Fatalf("%d former members remembered, want at most %d", len(g.former), maxFormer)
	}
	for i := range 10 {
		if _, ok := g.former[fmt.Sprintf("n%d", i)]; ok {
			t.Fatalf("n%d, among the oldest, is still remembered", i)
		}
	}
	if f := g.former["n1033"]; f.addr.String() != "10.0.4.9:7946" {
		t.Fatalf("n1033 remembered at %v, want 10.0.4.9:7946", f.addr)
	}
	g.forget("n1033")
	if _, ok := g.former["n1033"]; ok {
		t.Fatal("a member that came back is still a former member")
	}
}
