package labtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// WgShow runs `wg show DEV WHAT` in n (the node's own UAPI sockets) and
// returns its lines split on tabs.
func WgShow(t testing.TB, n *netlab.Node, dev, what string) [][]string {
	t.Helper()
	rows, err := WgRows(n, dev, what)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func WgRows(n *netlab.Node, dev, what string) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := n.Run(ctx, "wg", "show", dev, what)
	if err != nil {
		return nil, fmt.Errorf("wg show %s %s on %s: %v", dev, what, n.Name, err)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "\t"))
		}
	}
	return rows, nil
}

// PublicKey is n's WireGuard public key, read from its device.
func PublicKey(t testing.TB, n *netlab.Node) string {
	t.Helper()
	return WgShow(t, n, "weft0", "public-key")[0][0]
}

// KeyMap turns `wg show DEV preshared-keys` rows into peer -> key.
func KeyMap(rows [][]string) map[string]string {
	out := map[string]string{}
	for _, r := range rows {
		if len(r) == 2 {
			out[r[0]] = r[1]
		}
	}
	return out
}

// PairKey is the preshared key a and b hold for each other, read from both
// devices; ok only when both hold the same key (false while a device is
// not up yet).
func PairKey(t testing.TB, a, b *netlab.Node) (string, bool) {
	pa, ma := PubAndKeys(a)
	pb, mb := PubAndKeys(b)
	ka, kb := ma[pb], mb[pa]
	return ka, pa != "" && pb != "" && ka != "" && ka != "(none)" && ka == kb
}

// PubAndKeys is n's public key and its peers' preshared keys ("" and nil
// while its device is not up).
func PubAndKeys(n *netlab.Node) (string, map[string]string) {
	rows, err := WgRows(n, "weft0", "public-key")
	if err != nil || len(rows) == 0 {
		return "", nil
	}
	psks, _ := WgRows(n, "weft0", "preshared-keys")
	return rows[0][0], KeyMap(psks)
}
