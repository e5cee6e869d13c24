package peer

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/weftnet/weft/api"
)

// MaxCacheSize bounds the peer cache file the agent reads back.
const MaxCacheSize = 4 << 20

// cachedPeer is one entry of the peer cache (api.PeerCacheFile).
type cachedPeer struct {
	Name       string   `json:"name"`
	PublicKey  string   `json:"publicKey"`
	Endpoint   string   `json:"endpoint"`
	GossipAddr string   `json:"gossipAddress,omitempty"`
	PodCIDRs   []string `json:"podCIDRs"`
	Location   string   `json:"location,omitempty"`
	Direct     bool     `json:"direct,omitempty"`
	BehindNAT  bool     `json:"behindNAT,omitempty"`
}

// EncodeCache renders the accepted peers for the peer cache.
func EncodeCache(peers []NodeInfo) ([]byte, error) {
	out := make([]cachedPeer, 0, len(peers))
	for _, n := range peers {
		c := cachedPeer{Name: n.Name, PublicKey: n.PublicKey.String(), Endpoint: n.Endpoint.String(), PodCIDRs: api.PrefixStrings(n.PodCIDRs),
			Location: n.Location, Direct: n.Direct, BehindNAT: n.BehindNAT}
		if n.GossipAddr.IsValid() {
			c.GossipAddr = n.GossipAddr.String()
		}
		out = append(out, c)
	}
	return json.MarshalIndent(out, "", "  ")
}

// DecodeCache parses the peer cache. The cache is ours, but it is validated
// like any claim: a corrupted file must not install a bad peer.
func DecodeCache(b []byte) ([]NodeInfo, error) {
	if len(b) > MaxCacheSize {
		return nil, fmt.Errorf("peer cache over %d bytes", MaxCacheSize)
	}
	var cs []cachedPeer
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("peer cache: %w", err)
	}
	var out []NodeInfo
	for _, c := range cs {
		n := NodeInfo{Name: c.Name}
		var err error
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
		if n.Location, err = ParseLocation(c.Location); err != nil {
			return nil, fmt.Errorf("peer cache, %s: %w", c.Name, err)
		}
		n.Direct, n.BehindNAT = c.Direct, c.BehindNAT
		out = append(out, n)
	}
	return out, nil
}

// Same reports whether a and b make the same claim.
func Same(a, b NodeInfo) bool {
	return a.Name == b.Name && a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
		a.GossipAddr == b.GossipAddr && slices.Equal(a.PodCIDRs, b.PodCIDRs) &&
		a.Location == b.Location && a.Direct == b.Direct && a.BehindNAT == b.BehindNAT
}
