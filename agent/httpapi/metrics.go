package httpapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/peer"
)

// peerCollector exports each peer's path, handshake age, bytes and MTU,
// read from the device when scraped.
type peerCollector struct {
	a                              *API
	path, handshake, rx, tx, mtuDs *prometheus.Desc
	psk, pskAge                    *prometheus.Desc
}

// Collector is the per-peer series, read from Status (so a scrape reads the
// device at most once per statusTTL).
func (a *API) Collector() prometheus.Collector {
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
	st, err := c.a.Status()
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
