package agent

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/nft"
)

// debugLimit bounds what one debug reading may return.
const debugLimit = 16 << 20

// Debug is what a bug report needs from this node and the HTTP API does
// not otherwise say (httpapi.View): "nftables" is weft's table as nft lists
// it; "wireguard" the device as `wg show` prints it, with the private and
// preshared keys hidden.
func (v view) Debug(ctx context.Context, what string) ([]byte, error) {
	switch what {
	case "nftables":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nft", "list", "table", "inet", nft.Table).Output()
		if err != nil {
			return nil, fmt.Errorf("nft list table inet %s: %w", nft.Table, err)
		}
		if len(out) > debugLimit {
			out = append(out[:debugLimit], "\n(cut)\n"...)
		}
		return out, nil
	case "wireguard":
		return v.wgShow()
	}
	return nil, fmt.Errorf("no debug reading %q (nftables, wireguard)", what)
}

// wgShow prints the device as `wg show` does: keys a reader must never see
// (the private key, the preshared keys) are hidden.
func (v view) wgShow() ([]byte, error) {
	a := v.a
	peers, err := a.mesh.Peers()
	if err != nil {
		return nil, err
	}
	self := a.selfNow()
	var b strings.Builder
	fmt.Fprintf(&b, "interface: %s\n  public key: %s\n  private key: (hidden)\n  listening port: %d\n", a.cfg.Interface, self.PublicKey, a.cfg.ListenPort)
	sort.Slice(peers, func(i, j int) bool { return peers[i].PublicKey.String() < peers[j].PublicKey.String() })
	for _, p := range peers {
		fmt.Fprintf(&b, "\npeer: %s\n", p.PublicKey)
		if p.PresharedKey != [32]byte{} {
			b.WriteString("  preshared key: (hidden)\n")
		}
		if p.Endpoint != nil {
			fmt.Fprintf(&b, "  endpoint: %s\n", p.Endpoint)
		}
		ips := make([]string, len(p.AllowedIPs))
		for i, n := range p.AllowedIPs {
			ips[i] = n.String()
		}
		fmt.Fprintf(&b, "  allowed ips: %s\n", strings.Join(ips, ", "))
		if !p.LastHandshakeTime.IsZero() {
			fmt.Fprintf(&b, "  latest handshake: %s ago\n", time.Since(p.LastHandshakeTime).Round(time.Second))
		}
		fmt.Fprintf(&b, "  transfer: %d B received, %d B sent\n", p.ReceiveBytes, p.TransmitBytes)
		if p.PersistentKeepaliveInterval > 0 {
			fmt.Fprintf(&b, "  persistent keepalive: every %s\n", p.PersistentKeepaliveInterval)
		}
	}
	return []byte(b.String()), nil
}
