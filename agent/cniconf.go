package agent

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/plan"
)

// confInput is what plan.ConfList needs from the configuration: weft-cni
// asks the agent's /readyz on loopback when the HTTP server listens on all
// addresses, and reports attachments on the socket when policy is enforced.
func (c Config) confInput(mtu int) plan.ConfInput {
	in := plan.ConfInput{PodCIDRs: c.PodCIDRs, MTU: mtu, DataDir: filepath.Join(c.StateDir, "ipam")}
	host, port, _ := net.SplitHostPort(c.HTTPAddr) // validated by ParseFlags
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	in.ReadyURL = "http://" + net.JoinHostPort(host, port) + "/readyz"
	if c.enforcesPolicy() {
		in.AgentSocket = filepath.Join(c.StateDir, api.AgentSocket)
	}
	return in
}

// writeCNIConf writes the conflist atomically, unless it already holds exactly this.
func writeCNIConf(dir string, b []byte) (bool, error) {
	path := filepath.Join(dir, api.ConfFile)
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
