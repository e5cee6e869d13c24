package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/mesh"
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

// onDemand is the on-demand configuration (mesh/awake.go): the peers that
// start on the device are those the last run's awake record names; without
// a record (an agent that kept none: an older version, or on-demand off),
// the peers of the peer cache, which the last run may have had sessions
// with; on a first start (neither), none. With on-demand off the record
// goes, so a later run with it on does not read a stale one.
func (a *Agent) onDemand(cached []peer.NodeInfo) mesh.OnDemand {
	path := filepath.Join(a.cfg.StateDir, api.AwakeFile)
	if a.cfg.OnDemandAfter <= 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			a.log.Warn("cannot remove the awake record", "err", err)
		}
		return mesh.OnDemand{}
	}
	awake, found, err := mesh.ReadAwake(path)
	if err != nil {
		a.log.Warn("ignoring the awake record; the cached peers start awake", "err", err)
	}
	from := "the awake record"
	if !found {
		from = "the peer cache"
		awake = make(map[wgtypes.Key]bool, len(cached))
		for _, n := range cached {
			awake[n.PublicKey] = true
		}
	}
	a.log.Info("on-demand peers: the last run's awake peers start on the device", "peers", len(awake), "from", from)
	return mesh.OnDemand{After: a.cfg.OnDemandAfter, Grace: a.cfg.OnDemandGrace, Record: path,
		Awake: func(k wgtypes.Key) bool { return awake[k] }}
}
