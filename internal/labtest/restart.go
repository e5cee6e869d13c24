package labtest

import (
	"context"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netlab"
)

func PeerKey(t *testing.T, c *Cluster, on *netlab.Node, name string) string {
	t.Helper()
	ps, err := c.Peers(on)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == name {
			return p.PublicKey
		}
	}
	t.Fatalf("%s does not list %s as a peer", on.Name, name)
	return ""
}

// WeftRoutes lists the routes weft owns on a node (proto 87), v4 then v6.
func WeftRoutes(t *testing.T, n *netlab.Node) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		s, err := n.Run(context.Background(), "ip", fam, "route", "show", "proto", "87")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range NonEmpty(strings.Split(s, "\n")) {
			out = append(out, strings.Join(strings.Fields(strings.Replace(l, "linkdown", "", 1)), " "))
		}
	}
	return out
}
