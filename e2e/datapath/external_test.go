package datapath

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
)

// TestExternalPeerFromShowconf: a host that is not a node (a laptop on the
// underlay) gets a Peer object with its public key and two addresses. Its
// wg-quick configuration comes only from `weftctl showconf peer laptop`
// (the private key line filled in), brought up with wg-quick on userspace
// wireguard-go. It reaches pods' addresses on every node in both families,
// and every node reaches it back. A Peer object claiming a node's pod range
// is refused by every agent.
func TestExternalPeerFromShowconf(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)
	laptop, err := k.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	priv, err := laptop.Run(ctx, "wg", "genkey")
	if err != nil {
		t.Fatal(err)
	}
	priv = strings.TrimSpace(priv)
	pubCmd := laptop.Command(ctx, "wg", "pubkey")
	pubCmd.Stdin = strings.NewReader(priv + "\n")
	pub, err := pubCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	k.CreatePeer("laptop", strings.TrimSpace(string(pub)), "10.200.0.5/32", "fd00:200::5/128")
	thief, _ := wgtypes.GenerateKey()
	k.CreatePeer("thief", thief.PublicKey().String(), "10.244.2.0/25")
	nodes := k.Lab.Nodes()
	for _, n := range nodes {
		labtest.Eventually(t, 20*time.Second, n.Name+" has the laptop as an external peer", func() bool {
			p := labtest.PeerOf(k.Status(n), "peer/laptop")
			return p.Path == "external"
		})
		if p := labtest.PeerOf(k.Status(n), "peer/thief"); p.Name != "" {
			t.Errorf("%s accepted a Peer object claiming node2's pod range: %+v", n.Name, p)
		}
	}
	if got := k.Metric(nodes[0], `weft_peer_rejections_total{reason="external-outside"}`); got < 1 {
		t.Errorf("node1 counted %v external-outside refusals, want the thief's (node2's pod range is outside --external-cidr)", got)
	}

	conf, err := nodes[0].Run(ctx, filepath.Join(k.Bins, "weftctl"), "showconf", "peer", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	conf = regexp.MustCompile(`(?m)^PrivateKey = .*$`).ReplaceAllString(conf, "PrivateKey = "+priv)
	file := filepath.Join(laptop.Dir, "wl0.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	up := laptop.Command(ctx, "wg-quick", "up", file)
	up.Env = append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION="+filepath.Join(k.Bins, "wireguard-go"), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1")
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("wg-quick up with the showconf output: %v\n%s\nconfig:\n%s", err, out, conf)
	}
	for _, n := range nodes {
		for _, p := range n.PodCIDRs {
			labtest.WaitPing(t, laptop, api.FirstAddress(p), 15*time.Second)
		}
		for _, dst := range []string{"10.200.0.5", "fd00:200::5"} {
			labtest.WaitPing(t, n, netip.MustParseAddr(dst), 10*time.Second)
		}
	}
	nodeConf, err := nodes[0].Run(ctx, filepath.Join(k.Bins, "weftctl"), "showconf", "node", "node2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ListenPort = 51820", "# node1", "# node3", "# peer/laptop", "AllowedIPs = 10.200.0.5/32, fd00:200::5/128"} {
		if !strings.Contains(nodeConf, want) {
			t.Errorf("showconf node node2 lacks %q:\n%s", want, nodeConf)
		}
	}
	yml, err := nodes[1].Run(ctx, filepath.Join(k.Bins, "weftctl"), "status", "-o", "yaml")
	if err != nil || !strings.Contains(yml, "path: external") || !strings.Contains(yml, "name: peer/laptop") {
		t.Errorf("weftctl status -o yaml on node2 does not show the laptop as external (%v):\n%s", err, yml)
	}
	t.Logf("the laptop, configured only from showconf, reaches all %d nodes' pod ranges in both families and is reached back", len(nodes))
}
