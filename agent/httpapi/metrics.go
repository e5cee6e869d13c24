package httpapi

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// nodeCollector exports the node's settings and traffic counters, read
// from Status when scraped.
type nodeCollector struct {
	a                                      *API
	podPkts, podBytes, dropPkts, dropBytes *prometheus.Desc
	info, tunnelMTU                        *prometheus.Desc
}

// Collector is the node's series read from MetricsStatus (so a scrape
// reads the device at most once per statusTTL). The per-peer series are not in it:
// /metrics writes them itself (peerFamilies).
func (a *API) Collector() prometheus.Collector {
	return &nodeCollector{a: a,
		podPkts:   prometheus.NewDesc("weft_pod_packets_total", "Packets that left this node for other nodes' pods, by path: tunnel (this node's pods, encrypted), direct (this node's pods to a direct peer, by design), plaintext (anything in the clear outside direct paths: must stay 0).", []string{"path"}, nil),
		podBytes:  prometheus.NewDesc("weft_pod_bytes_total", "Bytes of weft_pod_packets_total, by path.", []string{"path"}, nil),
		dropPkts:  prometheus.NewDesc("weft_dropped_packets_total", "Pod packets weft dropped, by reason: strict (--strict-encryption: no tunnel to send them in), policy (NetworkPolicy).", []string{"reason"}, nil),
		dropBytes: prometheus.NewDesc("weft_dropped_bytes_total", "Bytes of weft_dropped_packets_total, by reason.", []string{"reason"}, nil),
		info:      prometheus.NewDesc("weft_node_info", "1, labelled with the agent's version and settings: pq (off, preferred, required), strict_encryption, intra_location, location.", []string{"version", "pq", "strict_encryption", "intra_location", "location"}, nil),
		tunnelMTU: prometheus.NewDesc("weft_tunnel_mtu_bytes", "The tunnel's MTU; a peer's weft_peer_mtu_bytes below it is a lowered path MTU.", nil, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.podPkts, c.podBytes, c.dropPkts, c.dropBytes, c.info, c.tunnelMTU} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.a.metricsStatus()
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
}

// peerFamily is one per-peer series family: value gives a peer's sample,
// or false where the peer has none; located families label it with the
// peer's location and path as well as its name.
type peerFamily struct {
	name, help, typ string
	located         bool
	value           func(p *api.PeerStatus, now time.Time, b []byte) ([]byte, bool)
}

// tunneled: direct peers have no tunnel, so no key, counters or handshake.
func tunneled(p *api.PeerStatus) bool { return p.Path != string(peer.PathDirect) }

// peerFamilies are the per-peer series, of every peer not resting
// (MetricsStatus). At thousands of peers they are most of a scrape:
// written straight from the reading in the text format, they cost no
// object per sample (client_golang's const metrics cost ~600 bytes each,
// 21 MB a scrape at 5000 peers: BenchmarkMetrics5000).
var peerFamilies = []peerFamily{
	{"weft_peer_path", "1 for each peer not resting, labelled with how pod traffic travels to it (encrypted, direct, external) and its location.", "gauge", true,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) { return append(b, '1'), true }},
	{"weft_peer_mtu_bytes", "The MTU pod packets to the peer get (lowered when the path MTU is smaller).", "gauge", false,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) {
			return strconv.AppendInt(b, int64(p.MTU), 10), true
		}},
	{"weft_peer_preshared_key", "1 when the tunnel to the peer holds a post-quantum preshared key, else 0.", "gauge", false,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) {
			if p.PresharedKey {
				return append(b, '1'), tunneled(p)
			}
			return append(b, '0'), tunneled(p)
		}},
	{"weft_peer_preshared_key_age_seconds", "Seconds since the pair's preshared key was agreed (absent without one).", "gauge", false,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) {
			return strconv.AppendInt(b, p.PresharedKeyAgeSeconds, 10), tunneled(p) && (p.PresharedKeyAgeSeconds > 0 || p.PresharedKey)
		}},
	{"weft_peer_receive_bytes_total", "Bytes received from the peer through the tunnel.", "counter", false,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) {
			return strconv.AppendInt(b, p.RxBytes, 10), tunneled(p)
		}},
	{"weft_peer_transmit_bytes_total", "Bytes sent to the peer through the tunnel.", "counter", false,
		func(p *api.PeerStatus, _ time.Time, b []byte) ([]byte, bool) {
			return strconv.AppendInt(b, p.TxBytes, 10), tunneled(p)
		}},
	// A resting or idle on-demand peer needs no session: its age would only
	// raise WeftPeerHandshakeStale.
	{"weft_peer_last_handshake_age_seconds", "Seconds since the last WireGuard handshake with the peer (absent before the first, and for on-demand peers resting or idle; direct peers have none).", "gauge", false,
		func(p *api.PeerStatus, now time.Time, b []byte) ([]byte, bool) {
			t, err := time.Parse(time.RFC3339, p.LatestHandshake)
			if err != nil || p.Resting || p.Idle || !tunneled(p) {
				return b, false
			}
			return strconv.AppendFloat(b, now.Sub(t).Seconds(), 'g', -1, 64), true
		}},
}

// serveMetrics is the registry's families, then the per-peer ones, in
// Prometheus' text format (which every Prometheus accepts; the per-peer
// families have no other encoder here).
func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request) {
	mfs, err := a.gather.Gather()
	if err != nil {
		http.Error(w, "gathering the metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := expfmt.NewEncoder(bw, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return // the scraper went away
		}
	}
	if st, err := a.metricsStatus(); err == nil {
		if writePeerFamilies(bw, st.Peers, time.Now()) != nil {
			return // the scraper went away
		}
	}
	_ = bw.Flush() // an error here is the scraper's going away: nothing to tell it
}

// writePeerFamilies writes each family's samples for peers, a line at a
// time through one reused buffer; it stops at the first write that fails.
func writePeerFamilies(w *bufio.Writer, peers []api.PeerStatus, now time.Time) error {
	var line []byte
	for _, f := range peerFamilies {
		if _, err := w.WriteString("# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.typ + "\n"); err != nil {
			return err
		}
		for i := range peers {
			p := &peers[i]
			line = append(line[:0], f.name...)
			if f.located { // label names sorted, as client_golang writes them
				line = appendLabelValue(append(line, `{location="`...), p.Location)
				line = appendLabelValue(append(line, `",path="`...), p.Path)
				line = append(line, `",peer="`...)
			} else {
				line = append(line, `{peer="`...)
			}
			line = appendLabelValue(line, p.Name)
			line = append(line, `"} `...)
			var ok bool
			if line, ok = f.value(p, now, line); !ok {
				continue
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return err
			}
		}
	}
	return nil
}

// labelEscaper escapes a label value as the text format wants.
var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func appendLabelValue(b []byte, v string) []byte {
	if strings.ContainsAny(v, "\\\n\"") {
		v = labelEscaper.Replace(v)
	}
	return append(b, v...)
}
