package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

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

// cacheEvery is the least time between two writes of the peer cache: at
// thousands of nodes it is a megabyte of JSON, and under churn (Nodes
// coming and going several times a second) writing it on every change
// was a tenth of the agent's CPU. A kill loses at most this much of it; the
// API server or gossip has the rest.
const cacheEvery = time.Second

// keepCache saves the accepted peers when they changed: at once if the last
// save is cacheEvery old, else when the loop's saveDue fires.
func (a *Agent) keepCache(peers []peer.NodeInfo) {
	if slices.EqualFunc(peers, a.saved, peer.Same) {
		return
	}
	if wait := cacheEvery - time.Since(a.savedAt); wait > 0 {
		if a.saveDue == nil {
			a.saveDue = time.After(wait)
		}
		return
	}
	a.savedAt = time.Now()
	if err := saveCache(a.cfg.StateDir, peers); err != nil {
		a.log.Warn("cannot save peer cache", "err", err)
		return
	}
	a.saved = peers
}

// savePending is the loop's saveDue firing: the accepted peers as they are now.
func (a *Agent) savePending() {
	a.saveDue = nil
	a.keepCache(a.acceptedPeers())
}
