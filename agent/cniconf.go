package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/internal/atomicfile"
)

// CNIConfFile is the conflist the agent writes once its mesh is ready.
const CNIConfFile = "10-weft.conflist"

// CNIConfVersion is the conflist's cniVersion: the newest version the
// container runtimes weft supports (containerd 1.6+, CRI-O) all accept.
const CNIConfVersion = "1.0.0"

// CNINetworkName is the network name in the conflist (and the IPAM subdirectory).
const CNINetworkName = "weft"

// CNIConfList renders the conflist: weft-cni with this node's pod CIDRs, the
// tunnel MTU and an IPAM directory under the state dir, then portmap for hostPort.
func CNIConfList(cfg Config, mtu int) ([]byte, error) {
	cidrs := make([]string, 0, len(cfg.PodCIDRs))
	for _, p := range cfg.PodCIDRs {
		cidrs = append(cidrs, p.String())
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	weft := map[string]any{
		"type":     "weft-cni",
		"podCIDRs": cidrs,
		"mtu":      mtu,
		"dataDir":  filepath.Join(cfg.StateDir, "ipam"),
		"readyURL": "http://" + net.JoinHostPort(host, port) + "/readyz",
	}
	if cfg.enforcesPolicy() {
		weft["agentSocket"] = filepath.Join(cfg.StateDir, AgentSocket)
	}
	list := map[string]any{
		// 1.0.0, not 1.1.0: containerd 1.6 and 1.7 (libcni 1.1) refuse a
		// 1.1.0 result ("unsupported CNI result version"), as the kind
		// suite's real containerd showed; weft-cni answers in whichever
		// version the runtime's config asks for.
		"cniVersion": CNIConfVersion,
		"name":       CNINetworkName,
		"plugins": []any{
			weft,
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
		},
	}
	return json.MarshalIndent(list, "", "  ")
}

// writeCNIConf writes the conflist atomically, unless it already holds exactly this.
func writeCNIConf(dir string, b []byte) (bool, error) {
	path := filepath.Join(dir, CNIConfFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("cni conf dir: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
