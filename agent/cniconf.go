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

// CNIConfVersion is the conflist's cniVersion: the newest version every
// runtime weft supports accepts (containerd 1.6+, CRI-O). CNIConfVersions is
// its cniVersions list, from which runtimes with libcni 1.2+ take the newest
// they implement.
const CNIConfVersion = "1.0.0"

// CNIConfVersions: see CNIConfVersion.
var CNIConfVersions = []string{"1.0.0", "1.1.0"}

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
		// cniVersion 1.0.0 for runtimes whose libcni predates 1.2
		// (containerd 1.6 and 1.7 refuse a 1.1.0 result, "unsupported CNI
		// result version", as the kind suite's containerd showed);
		// cniVersions lets libcni 1.2+ (containerd 2, CRI-O) pick 1.1.0 and
		// with it GC and STATUS.
		"cniVersion":  CNIConfVersion,
		"cniVersions": CNIConfVersions,
		"name":        CNINetworkName,
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
