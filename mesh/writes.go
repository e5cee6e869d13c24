package mesh

// The device writes the mesh counts, for metrics
// (weft_wireguard_config_writes_total, weft_wireguard_peer_writes_total).

// DeviceWrites counts configuration writes made to the WireGuard device.
func (m *Mesh) DeviceWrites() uint64 { return m.writes.Load() }

// WriteCause is why a peer was written to the device.
type WriteCause int

// The causes of peer writes; String names them (a metric label).
const (
	WritePlan WriteCause = iota // the plan changed (Apply): nodes, endpoints, keys
	WriteKey                    // a pair's preshared key (WritePeerKey)
	WriteRest                   // an idle peer left the device (on-demand)
	WriteWake                   // a resting peer came back
	writeCauses
)

func (c WriteCause) String() string {
	return [...]string{"plan", "preshared-key", "rest", "wake"}[c]
}

// WriteCauses lists every cause.
func WriteCauses() []WriteCause { return []WriteCause{WritePlan, WriteKey, WriteRest, WriteWake} }

// PeerWrites counts peers written (created, changed or removed) on the
// device for cause c.
func (m *Mesh) PeerWrites(c WriteCause) uint64 { return m.peerWrites[c].Load() }
