package labtest

import (
	"context"
	"slices"
	"testing"

	"github.com/weftnet/weft/internal/netlab"
)

// PeerNames lists the names of a node's peers, sorted; nil while its agent does not answer.
func PeerNames(t *testing.T, c *Cluster, n *netlab.Node) []string {
	t.Helper()
	names, err := n.PeerNames(context.Background(), c.Bins)
	if err != nil {
		return nil
	}
	slices.Sort(names)
	return names
}
