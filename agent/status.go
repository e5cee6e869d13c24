package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// status is this node and its peers as the registry accepted them and the
// device sees them (handshakes, counters, learned endpoints).
func (a *Agent) status() (api.Status, error) {
	dev, err := a.mesh.Peers()
	if err != nil {
		return api.Status{}, err
	}
	byKey := make(map[wgtypes.Key]wgtypes.Peer, len(dev))
	for _, p := range dev {
		byKey[p.PublicKey] = p
	}
	mtus := a.pmtu.snapshot()
	claims := a.reg.Peers()
	self := a.selfNow()
	st := api.Status{
		Node: api.NodeStatus{
			Name: self.Name, PublicKey: self.PublicKey.String(), Endpoint: self.Endpoint.String(),
			PodCIDRs: api.PrefixStrings(self.PodCIDRs), Location: self.Location, IntraLocation: peer.IntraLocation(self.Direct),
			StrictEncryption: a.cfg.StrictEncryption, Ready: a.ready.Load(), MTU: a.mtu,
			PQ: a.cfg.PQ, PSKRotationSeconds: int64(a.cfg.PSKRotation.Seconds()), KeyAgeSeconds: int64(a.pq.NodeKeyAge().Seconds()),
		},
		Peers: make([]api.PeerStatus, 0, len(claims)),
	}
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
		}
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

// statusTTL is how long one reading of the device answers /v1/status,
// /v1/peers and the peer metrics: anything on the node can ask as often as
// it likes, and each fresh answer reads every peer from the device.
const statusTTL = time.Second

// statusCache is the last status and when it was read.
type statusCache struct {
	mu  sync.Mutex
	at  time.Time
	st  api.Status
	err error
}

// cachedStatus is status, read at most once per statusTTL: callers that
// come while it is read wait for that reading.
func (a *Agent) cachedStatus() (api.Status, error) {
	c := &a.statusCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= statusTTL {
		c.st, c.err = a.status()
		c.at = time.Now()
	}
	return c.st, c.err
}

// invalidate makes the next reading fresh: the loop calls it after each
// change it applies, so an answer never predates a change already made.
func (c *statusCache) invalidate() {
	c.mu.Lock()
	c.at = time.Time{}
	c.mu.Unlock()
}

func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.cachedStatus()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

func (a *Agent) servePeers(w http.ResponseWriter, r *http.Request) {
	st, err := a.cachedStatus()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st.Peers)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// peerCollector exports each peer's path, handshake age, bytes and MTU,
// read from the device when scraped.
type peerCollector struct {
	a                              *Agent
	path, handshake, rx, tx, mtuDs *prometheus.Desc
	psk, pskAge                    *prometheus.Desc
}

func newPeerCollector(a *Agent) *peerCollector {
	return &peerCollector{a: a,
		path:      prometheus.NewDesc("weft_peer_path", "1 for each peer, labelled with how pod traffic travels to it (encrypted, direct, external) and its location.", []string{"peer", "path", "location"}, nil),
		handshake: prometheus.NewDesc("weft_peer_last_handshake_age_seconds", "Seconds since the last WireGuard handshake with the peer (absent before the first; direct peers have none).", []string{"peer"}, nil),
		rx:        prometheus.NewDesc("weft_peer_receive_bytes_total", "Bytes received from the peer through the tunnel.", []string{"peer"}, nil),
		tx:        prometheus.NewDesc("weft_peer_transmit_bytes_total", "Bytes sent to the peer through the tunnel.", []string{"peer"}, nil),
		mtuDs:     prometheus.NewDesc("weft_peer_mtu_bytes", "The MTU pod packets to the peer get (lowered when the path MTU is smaller).", []string{"peer"}, nil),
		psk:       prometheus.NewDesc("weft_peer_preshared_key", "1 when the tunnel to the peer holds a post-quantum preshared key, else 0.", []string{"peer"}, nil),
		pskAge:    prometheus.NewDesc("weft_peer_preshared_key_age_seconds", "Seconds since the pair's preshared key was agreed (absent without one).", []string{"peer"}, nil),
	}
}

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.path, c.handshake, c.rx, c.tx, c.mtuDs, c.psk, c.pskAge} {
		ch <- d
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.a.cachedStatus()
	if err != nil {
		return
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(c.path, prometheus.GaugeValue, 1, p.Name, p.Path, p.Location)
		ch <- prometheus.MustNewConstMetric(c.mtuDs, prometheus.GaugeValue, float64(p.MTU), p.Name)
		if p.Path == string(peer.PathDirect) {
			continue
		}
		psk := 0.0
		if p.PresharedKey {
			psk = 1
		}
		ch <- prometheus.MustNewConstMetric(c.psk, prometheus.GaugeValue, psk, p.Name)
		if p.PresharedKeyAgeSeconds > 0 || p.PresharedKey {
			ch <- prometheus.MustNewConstMetric(c.pskAge, prometheus.GaugeValue, float64(p.PresharedKeyAgeSeconds), p.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.rx, prometheus.CounterValue, float64(p.RxBytes), p.Name)
		ch <- prometheus.MustNewConstMetric(c.tx, prometheus.CounterValue, float64(p.TxBytes), p.Name)
		if t, err := time.Parse(time.RFC3339, p.LatestHandshake); err == nil {
			ch <- prometheus.MustNewConstMetric(c.handshake, prometheus.GaugeValue, time.Since(t).Seconds(), p.Name)
		}
	}
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
