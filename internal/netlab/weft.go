package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
)

// AgentHTTP is where lab agents serve their API, inside each node.
const AgentHTTP = "127.0.0.1:9587"

// AgentPprof is where a lab agent started with --pprof-addr serves Go's
// profiles (the bench does, to show where the agent's CPU went).
const AgentPprof = "127.0.0.1:6060"

// WriteGossipKey writes a fresh gossip key (mode 0600) into the lab's directory.
func (l *Lab) WriteGossipKey() (string, error) {
	k, err := wgtypes.GenerateKey()
	if err != nil {
		return "", err
	}
	p := filepath.Join(l.Dir, "gossip.key")
	return p, os.WriteFile(p, []byte(k.String()+"\n"), 0o600)
}

// AgentArgs are the weft-agent flags for a lab node: its pod CIDRs, its
// underlay address, its own state and CNI directories, the lab's gossip key
// and seed (the first node).
func (n *Node) AgentArgs(gossipKey string, seed *Node) []string {
	var cidrs []string
	for _, p := range n.PodCIDRs {
		cidrs = append(cidrs, p.String())
	}
	return []string{
		"--node-name", n.Name,
		"--pod-cidr", strings.Join(cidrs, ","),
		"--advertise-address", n.Addr.String() + "," + n.Addr6.String(),
		"--join", seed.Addr.String(),
		"--gossip-key-file", gossipKey,
		"--state-dir", n.StateDir,
		"--cni-conf-dir", n.CNIConfDir,
		"--http-addr", AgentHTTP,
		"--cluster-cidr", ClusterCIDRs,
	}
}

// PeerNames asks the node's agent, through weftctl, which peers it has.
func (n *Node) PeerNames(ctx context.Context, bins string) ([]string, error) {
	names, _, err := n.peerHandshakes(ctx, bins)
	return names, err
}

// peerHandshakes returns the node's peers and how many of them have completed a handshake.
func (n *Node) peerHandshakes(ctx context.Context, bins string) ([]string, int, error) {
	out, err := n.Run(ctx, filepath.Join(bins, "weftctl"), "--agent", "http://"+AgentHTTP, "peers", "-o", "json")
	if err != nil {
		return nil, 0, err
	}
	var ps []struct {
		Name            string `json:"name"`
		LatestHandshake string `json:"latestHandshake"`
		Path            string `json:"path"`
	}
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, 0, fmt.Errorf("weftctl peers -o json on %s: %v", n.Name, err)
	}
	names := make([]string, 0, len(ps))
	shaken := 0
	for _, p := range ps {
		names = append(names, p.Name)
		if p.LatestHandshake != "" || p.Path == "direct" { // a direct path has no tunnel to shake hands on
			shaken++
		}
	}
	return names, shaken, nil
}

// WaitMesh waits until every node (of only, when given) lists every other as
// a peer and has completed a WireGuard handshake with each.
func (l *Lab) WaitMesh(ctx context.Context, bins string, timeout time.Duration, only ...*Node) error {
	deadline := time.Now().Add(timeout)
	nodes := l.Nodes()
	if len(only) > 0 {
		nodes = only
	}
	for {
		problem := ""
		for _, n := range nodes {
			names, shaken, err := n.peerHandshakes(ctx, bins)
			if err != nil {
				problem = err.Error()
				break
			}
			if len(names) != len(nodes)-1 || shaken != len(names) {
				problem = fmt.Sprintf("%s has peers %v, %d with a handshake", n.Name, names, shaken)
				break
			}
		}
		if problem == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mesh did not form in %v: %s", timeout, problem)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitCNIConf waits for the node's agent to write its conflist, which it
// does only once its mesh is ready.
func (n *Node) WaitCNIConf(ctx context.Context, timeout time.Duration) error {
	path := filepath.Join(n.CNIConfDir, api.ConfFile)
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s after %v", n.Name, path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
