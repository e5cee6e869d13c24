package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/peer"
)

// saveCache writes the accepted peers to the state directory.
func saveCache(dir string, peers []peer.NodeInfo) error {
	b, err := peer.EncodeCache(peers)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, api.PeerCacheFile), b, 0o600)
}

// loadCache reads the cached peers (none when there is no cache).
func loadCache(dir string) ([]peer.NodeInfo, error) {
	f, err := os.Open(filepath.Join(dir, api.PeerCacheFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, peer.MaxCacheSize+1))
	if err != nil {
		return nil, fmt.Errorf("peer cache: %w", err)
	}
	return peer.DecodeCache(b)
}
