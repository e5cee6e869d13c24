package mesh

import (
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// counters keeps each peer's byte counters monotonic while the peer stays
// in the mesh. The device counts per peer object, and weft re-creates a
// peer to make it shake hands at once under a new preshared key (every
// rotation, WritePeerKey) and when it falls asleep (Apply): without this,
// weft_peer_{receive,transmit}_bytes_total would start again from zero
// each time. A peer removed for good starts from zero if it comes back.
type counters struct {
	mu      sync.Mutex
	carried map[wgtypes.Key][2]int64 // the counts of the peer's earlier objects
	floor   map[wgtypes.Key][2]int64 // what the last reading returned
}

// adjust adds each peer's earlier objects' counts to its own, never below
// what the last reading returned (a reading between a re-creation and its
// carry sees the new object at zero and the old carry).
func (c *counters) adjust(peers []wgtypes.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	floor := make(map[wgtypes.Key][2]int64, len(peers))
	for i := range peers {
		floor[peers[i].PublicKey] = c.adjusted(&peers[i])
	}
	c.floor = floor
}

// adjustOne is adjust for one peer's reading; the others' floors stay.
func (c *counters) adjustOne(p *wgtypes.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floor == nil {
		c.floor = map[wgtypes.Key][2]int64{}
	}
	c.floor[p.PublicKey] = c.adjusted(p)
}

// adjusted adds p's earlier objects' counts to its own, never below its
// floor, and returns its new floor. Under c.mu.
func (c *counters) adjusted(p *wgtypes.Peer) [2]int64 {
	k := c.carried[p.PublicKey]
	f := c.floor[p.PublicKey]
	p.ReceiveBytes = max(p.ReceiveBytes+k[0], f[0])
	p.TransmitBytes = max(p.TransmitBytes+k[1], f[1])
	return [2]int64{p.ReceiveBytes, p.TransmitBytes}
}

// carry records what a peer about to be re-created has counted (p as an
// adjusted reading returned it).
func (c *counters) carry(p wgtypes.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.carried == nil {
		c.carried = map[wgtypes.Key][2]int64{}
	}
	c.carried[p.PublicKey] = [2]int64{p.ReceiveBytes, p.TransmitBytes}
}

// forget drops a peer removed from the mesh.
func (c *counters) forget(pub wgtypes.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.carried, pub)
	delete(c.floor, pub)
}

// carriedOf is what pub's earlier objects counted (a resting peer's counts).
func (c *counters) carriedOf(pub wgtypes.Key) (rx, tx int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.carried[pub]
	return k[0], k[1]
}
