package labtest

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// OneNode is a single-node cluster whose agent has written its conflist.
func OneNode(t *testing.T) (*Cluster, *netlab.Node) {
	c := NewCluster(t, 1)
	n := c.Lab.Nodes()[0]
	c.Start(n)
	c.WaitCNIConf(n)
	return c, n
}

// Reservations lists the addresses held in a node's IPAM directory.
func Reservations(t *testing.T, n *netlab.Node) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.StateDir, "ipam", api.NetworkName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// HostVeths lists weft-cni's host veths on a node.
func HostVeths(t *testing.T, n *netlab.Node) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, api.HostVethPrefix) {
				out = append(out, l.Attrs().Name)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func SortedAddrs(p *netlab.Pod) []string {
	out := []string{p.Addr(false).String(), p.Addr(true).String()}
	slices.Sort(out)
	return out
}
