package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// peerCollector exports each peer's path, handshake age, bytes and MTU,
// read from the device when scraped.
type peerCollector struct {
	a                              *API
	path, handshake, rx, tx, mtuDs *prometheus.Desc
	psk, pskAge                    *prometheus.Desc
	// the node's traffic counters (Status.Node.Traffic)
	podPkts, podBytes, dropPkts, dropBytes *prometheus.Desc
	info, tunnelMTU                        *prometheus.Desc
}

// Collector is the per-peer series, read from Status (so a scrape reads the
// device at most once per statusTTL).
func (a *API) Collector() prometheus.Collector {
	return &peerCollector{a: a,
		path:      prometheus.NewDesc("weft_peer_path", "1 for each peer, labelled with how pod traffic travels to it (encrypted, direct, external) and its location.", []string{"peer", "path", "location"}, nil),
		handshake: prometheus.NewDesc("weft_peer_last_handshake_age_seconds", "Seconds since the last WireGuard handshake with the peer (absent before the first, and for on-demand peers resting or idle; direct peers have none).", []string{"peer"}, nil),
		rx:        prometheus.NewDesc("weft_peer_receive_bytes_total", "Bytes received from the peer through the tunnel.", []string{"peer"}, nil),
		tx:        prometheus.NewDesc("weft_peer_transmit_bytes_total", "Bytes sent to the peer through the tunnel.", []string{"peer"}, nil),
		mtuDs:     prometheus.NewDesc("weft_peer_mtu_bytes", "The MTU pod packets to the peer get (lowered when the path MTU is smaller).", []string{"peer"}, nil),
		psk:       prometheus.NewDesc("weft_peer_preshared_key", "1 when the tunnel to the peer holds a post-quantum preshared key, else 0.", []string{"peer"}, nil),
		pskAge:    prometheus.NewDesc("weft_peer_preshared_key_age_seconds", "Seconds since the pair's preshared key was agreed (absent without one).", []string{"peer"}, nil),
		podPkts:   prometheus.NewDesc("weft_pod_packets_total", "Packets that left this node for other nodes' pods, by path: tunnel (this node's pods, encrypted), direct (this node's pods to a direct peer, by design), plaintext (anything in the clear outside direct paths: must stay 0).", []string{"path"}, nil),
		podBytes:  prometheus.NewDesc("weft_pod_bytes_total", "Bytes of weft_pod_packets_total, by path.", []string{"path"}, nil),
		dropPkts:  prometheus.NewDesc("weft_dropped_packets_total", "Pod packets weft dropped, by reason: strict (--strict-encryption: no tunnel to send them in), policy (NetworkPolicy).", []string{"reason"}, nil),
		dropBytes: prometheus.NewDesc("weft_dropped_bytes_total", "Bytes of weft_dropped_packets_total, by reason.", []string{"reason"}, nil),
		info:      prometheus.NewDesc("weft_node_info", "1, labelled with the agent's version and settings: pq (off, preferred, required), strict_encryption, intra_location, location.", []string{"version", "pq", "strict_encryption", "intra_location", "location"}, nil),
		tunnelMTU: prometheus.NewDesc("weft_tunnel_mtu_bytes", "The tunnel's MTU; a peer's weft_peer_mtu_bytes below it is a lowered path MTU.", nil, nil),
	}
}

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.path, c.handshake, c.rx, c.tx, c.mtuDs, c.psk, c.pskAge, c.podPkts, c.podBytes, c.dropPkts, c.dropBytes, c.info, c.tunnelMTU} {
		ch <- d
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.a.Status()
	if err != nil {
		return
	}
	n := st.Node
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, n.Version, n.PQ, strconv.FormatBool(n.StrictEncryption), n.IntraLocation, n.Location)
	ch <- prometheus.MustNewConstMetric(c.tunnelMTU, prometheus.GaugeValue, float64(n.MTU))
	if t := n.Traffic; t != nil {
		for _, x := range []struct {
			pkts, bytes *prometheus.Desc
			label       string
			n           api.Count
		}{{c.podPkts, c.podBytes, "tunnel", t.Tunnel}, {c.podPkts, c.podBytes, "direct", t.Direct}, {c.podPkts, c.podBytes, "plaintext", t.Plaintext},
			{c.dropPkts, c.dropBytes, "strict", t.StrictDrops}, {c.dropPkts, c.dropBytes, "policy", t.PolicyDrops}} {
			ch <- prometheus.MustNewConstMetric(x.pkts, prometheus.CounterValue, float64(x.n.Packets), x.label)
			ch <- prometheus.MustNewConstMetric(x.bytes, prometheus.CounterValue, float64(x.n.Bytes), x.label)
		}
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
		// A resting or idle on-demand peer needs no session: its age would
		// only raise WeftPeerHandshakeStale.
		if t, err := time.Parse(time.RFC3339, p.LatestHandshake); err == nil && !p.Resting && !p.Idle {
			ch <- prometheus.MustNewConstMetric(c.handshake, prometheus.GaugeValue, time.Since(t).Seconds(), p.Name)
		}
	}
}
