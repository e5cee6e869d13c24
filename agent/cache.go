package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/internal/atomicfile"
)

// PeerCacheFile holds the last accepted peers in the state directory, so a
// restarted agent restores the mesh before any source has answered.
const PeerCacheFile = "peers.json"

const maxCacheSize = 4 << 20

type cachedPeer struct {
	Name       string   `json:"name"`
	PublicKey  string   `json:"publicKey"`
	Endpoint   string   `json:"endpoint"`
	GossipAddr string   `json:"gossipAddress,omitempty"`
	PodCIDRs   []string `json:"podCIDRs"`
}

func saveCache(dir string, peers []NodeInfo) error {
	out := make([]cachedPeer, 0, len(peers))
	for _, n := range peers {
		c := cachedPeer{Name: n.Name, PublicKey: n.PublicKey.String(), Endpoint: n.Endpoint.String()}
		if n.GossipAddr.IsValid() {
			c.GossipAddr = n.GossipAddr.String()
		}
		for _, p := range n.PodCIDRs {
			c.PodCIDRs = append(c.PodCIDRs, p.String())
		}
		out = append(out, c)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, PeerCacheFile), b, 0o600)
}

// loadCache reads the cached peers. The cache is ours, but it is validated
// like any claim: a corrupted file must not install a bad peer.
func loadCache(dir string) ([]NodeInfo, error) {
	f, err := os.Open(filepath.Join(dir, PeerCacheFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCacheSize {
		return nil, fmt.Errorf("peer cache over %d bytes", maxCacheSize)
	}
	var cs []cachedPeer
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("peer cache: %w", err)
	}
	var out []NodeInfo
	for _, c := range cs {
		n := NodeInfo{Name: c.Name}
		if n.PublicKey, err = ParsePublicKey(c.PublicKey); err != nil {
			return nil, fmt.Errorf("peer cache, %s: %w", c.Name, err)
		}
		if n.Endpoint, err = ParseEndpoint(c.Endpoint); err != nil {
			return nil, fmt.Errorf("peer cache, %s: %w", c.Name, err)
		}
		if c.GossipAddr != "" {
			if n.GossipAddr, err = ParseEndpoint(c.GossipAddr); err != nil {
				return nil, fmt.Errorf("peer cache, %s: %w", c.Name, err)
			}
		}
		if n.PodCIDRs, err = parseClaimedCIDRs(c.PodCIDRs); err != nil {
			return nil, fmt.Errorf("peer cache, %s: %w", c.Name, err)
		}
		out = append(out, n)
	}
	return out, nil
}
