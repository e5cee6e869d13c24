package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/agent/httpapi"
	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/nft"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// Status is this node and its peers as the registry accepted them and the
// device sees them (handshakes, counters, learned endpoints).
func (v view) Status() (api.Status, error) { return v.status(false) }

// MetricsStatus is Status without the resting peers.
func (v view) MetricsStatus() (api.Status, error) { return v.status(true) }

// status is Status, without the resting peers when awake is set: those
// are left out before anything is read or formatted for them.
func (v view) status(awake bool) (api.Status, error) {
	a := v.a
	dev, err := a.mesh.Peers()
	if err != nil {
		return api.Status{}, err
	}
	byKey := make(map[wgtypes.Key]wgtypes.Peer, len(dev))
	for _, p := range dev {
		byKey[p.PublicKey] = p
	}
	mtus := a.pmtu.Snapshot()
	var claims []peer.Claim
	if awake {
		a.reg.EachPeer(func(c *peer.Claim) { // a copy of the few awake, not of all
			if !a.mesh.Resting(c.PublicKey) {
				claims = append(claims, *c)
			}
		})
	} else {
		claims = a.reg.Peers()
	}
	self := a.selfNow()
	st := api.Status{
		Node: api.NodeStatus{
			Name: self.Name, Version: version(), PublicKey: self.PublicKey.String(), Endpoint: self.Endpoint.String(),
			PodCIDRs: api.PrefixStrings(self.PodCIDRs), Location: self.Location, IntraLocation: peer.IntraLocation(self.Direct),
			StrictEncryption: a.cfg.StrictEncryption, Ready: a.ready.Load(), MTU: a.mtu,
			PQ: a.cfg.PQ, PSKRotationSeconds: int64(a.cfg.PSKRotation.Seconds()), KeyAgeSeconds: int64(a.pq.NodeKeyAge().Seconds()),
		},
		Peers: make([]api.PeerStatus, 0, len(claims)),
	}
	st.Node.Traffic = a.traffic()
	for _, n := range claims {
		ps := api.PeerStatus{
			Name:              n.Name,
			PublicKey:         n.PublicKey.String(),
			Endpoint:          n.Endpoint.String(),
			AnnouncedEndpoint: n.Endpoint.String(),
			PodCIDRs:          api.PrefixStrings(n.PodCIDRs),
			Source:            string(n.Source),
			Location:          n.Location,
			Path:              string(pathTo(self, n.NodeInfo, &a.noDirect)),
			IntraLocation:     peer.IntraLocation(n.Direct),
			MTU:               a.mtu,
		}
		if m, ok := mtus[n.Name]; ok {
			ps.MTU = m
		}
		if ps.Path == string(peer.PathDirect) {
			ps.MTU = a.mtu + mesh.Overhead
		}
		if d, ok := byKey[n.PublicKey]; ok {
			fromDevice(&ps, d)
		} else if d, ok := a.mesh.RestingPeer(n.PublicKey); ok { // off the device: as kept
			fromDevice(&ps, d)
		}
		ps.Resting = a.mesh.Resting(n.PublicKey)
		ps.Idle = !ps.Resting && a.mesh.Idle(n.PublicKey)
		if k := a.pq.Status(n.PublicKey); k.Has {
			ps.PresharedKeyAgeSeconds = int64(k.Age.Seconds())
		} else {
			ps.PresharedKeyError = k.Failed
		}
		st.Peers = append(st.Peers, ps)
	}
	a.extMu.Lock()
	ext := a.extAccepted
	a.extMu.Unlock()
	for _, e := range ext {
		ps := api.PeerStatus{
			Name: plan.ExternalName(e.Name), PublicKey: e.PublicKey.String(), PodCIDRs: api.PrefixStrings(e.AllowedIPs),
			Source: "peer-object", Path: string(peer.PathExternal), MTU: a.mtu,
		}
		if e.Endpoint.IsValid() {
			ps.Endpoint, ps.AnnouncedEndpoint = e.Endpoint.String(), e.Endpoint.String()
		}
		if d, ok := byKey[e.PublicKey]; ok {
			fromDevice(&ps, d)
		}
		st.Peers = append(st.Peers, ps)
	}
	return st, nil
}

// traffic reads weft's nftables counters (nil when they cannot be read:
// the status goes on without them).
func (a *Agent) traffic() *api.Traffic {
	if a.tables == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := nft.ReadCounters(ctx, a.tables)
	if err != nil {
		a.log.Debug("cannot read the traffic counters", "err", err)
		return nil
	}
	get := func(name string) api.Count { return api.Count{Packets: c[name].Packets, Bytes: c[name].Bytes} }
	return &api.Traffic{Tunnel: get(nft.CounterTunnel), Direct: get(nft.CounterDirect), Plaintext: get(nft.CounterPlaintext),
		StrictDrops: get(nft.CounterStrictDrops), PolicyDrops: get(nft.CounterPolicyDrops)}
}

// fromDevice fills in what the device knows of a peer: its last handshake,
// counters, and the endpoint it sends to (learned, behind NAT).
func fromDevice(ps *api.PeerStatus, d wgtypes.Peer) {
	if !d.LastHandshakeTime.IsZero() {
		ps.LatestHandshake = d.LastHandshakeTime.UTC().Format(time.RFC3339)
	}
	ps.RxBytes, ps.TxBytes = d.ReceiveBytes, d.TransmitBytes
	ps.PresharedKey = d.PresharedKey != wgtypes.Key{}
	if d.Endpoint != nil {
		ap := d.Endpoint.AddrPort()
		ps.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
}

// selfNow is this node as the loop last applied it (its location may change).
func (a *Agent) selfNow() peer.NodeInfo {
	a.locMu.Lock()
	defer a.locMu.Unlock()
	return a.self
}

// pathTo is the path to n: peer.Path, but encrypted where the direct
// route could not be written (fallbacks).
func pathTo(self, n peer.NodeInfo, f *fallbacks) peer.PathKind {
	p := peer.Path(self, n)
	if p == peer.PathDirect && f.has(n.Name) {
		return peer.PathEncrypted
	}
	return p
}

// view is the agent as the HTTP API reads it (httpapi.View).
type view struct{ a *Agent }

func (v view) Mesh() httpapi.Mesh {
	a := v.a
	m := httpapi.Mesh{Self: a.selfNow()}
	for _, c := range a.reg.Peers() {
		m.Nodes = append(m.Nodes, c.NodeInfo)
	}
	a.extMu.Lock()
	m.Externals = a.extAccepted
	a.extMu.Unlock()
	return m
}

func (v view) Ready() error {
	if !v.a.ready.Load() {
		return errors.New("first reconcile not done")
	}
	if v.a.netpol != nil && !v.a.netpol.Healthy() {
		return errors.New("network policy not programmed")
	}
	return nil
}
