package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/source/gossip"
)

// metrics are the agent's Prometheus series, on a registry of its own.
type metrics struct {
	reg          *prometheus.Registry
	peers        prometheus.Gauge
	rejections   *prometheus.CounterVec
	reconciles   *prometheus.CounterVec
	passSeconds  prometheus.Histogram
	dormant      prometheus.Gauge
	policySyncs  *prometheus.CounterVec
	policyPods   prometheus.Gauge
	gossipLogs   *prometheus.CounterVec
	gossipRefuse *prometheus.CounterVec
	httpRefused  prometheus.Counter
	// directFailures counts peers sent through the tunnel because their
	// direct route could not be written.
	directFailures prometheus.Counter
	nftReasserts   prometheus.Counter
}

func (m *metrics) gossipLog(level string)      { m.gossipLogs.WithLabelValues(level).Inc() }
func (m *metrics) gossipRefused(reason string) { m.gossipRefuse.WithLabelValues(reason).Inc() }

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_peers", Help: "WireGuard peers installed.",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_peer_rejections_total", Help: "Peer claims refused, by reason.",
		}, []string{"reason"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_reconciles_total", Help: "Data plane reconciles, by result (changed, unchanged, error).",
		}, []string{"result"}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_reconcile_duration_seconds", Help: "How long one reconcile pass of the data plane took (plan, device, routes, egress NAT), whatever its result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms to 8 s
		}),
		dormant: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_peers_dormant", Help: "Peers whose persistent keepalive rests: they have not answered (30 s without a first handshake, 3 min since the last), or are new passive peers awaiting the first.",
		}),
		policySyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_policy_syncs_total", Help: "NetworkPolicy syncs to nftables, by result (changed, unchanged, error).",
		}, []string{"result"}),
		policyPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_policy_isolated_pods", Help: "Pods on this node isolated by a NetworkPolicy in at least one direction.",
		}),
		gossipLogs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gossip_log_lines_total", Help: "memberlist warnings and errors (bad packets among them), logged or suppressed by the rate limit.",
		}, []string{"level"}),
		gossipRefuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gossip_streams_refused_total", Help: "Incoming gossip streams closed unread, by the limit they hit.",
		}, []string{"limit"}),
		directFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_direct_path_failures_total", Help: "Peers sent through the tunnel because their direct route could not be written (a next hop the underlay does not reach).",
		}),
		httpRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_http_connections_refused_total", Help: "HTTP connections closed at accept: one source held too many.",
		}),
		nftReasserts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_nftables_reasserts_total", Help: "Times weft's nftables objects were found changed from outside and written again.",
		}),
	}
	for _, r := range []string{"warn", "error"} {
		m.gossipLogs.WithLabelValues(r)
	}
	for _, r := range []string{"streams", "streams-per-source"} {
		m.gossipRefuse.WithLabelValues(r)
	}
	for _, r := range peer.Reasons {
		m.rejections.WithLabelValues(string(r))
	}
	for _, r := range []string{"changed", "unchanged", "error"} {
		m.reconciles.WithLabelValues(r)
		m.policySyncs.WithLabelValues(r)
	}
	m.reg.MustRegister(m.peers, m.rejections, m.reconciles, m.passSeconds, m.dormant, kubeclient.APIRequests, kubeclient.APIReceived, m.policySyncs, m.policyPods, m.gossipLogs, m.gossipRefuse, m.httpRefused, m.directFailures, m.nftReasserts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchDevice registers the series read from gossip and the device when
// scraped, once both exist.
func (m *metrics) watchDevice(g *gossip.Source, d *mesh.Mesh) {
	for _, c := range mesh.WriteCauses() {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_wireguard_peer_writes_total", Help: "WireGuard peers created, changed or removed on the device, by cause: the plan (nodes, endpoints, keys changed), a pair's preshared key, an idle peer's rest or its wake.",
			ConstLabels: prometheus.Labels{"cause": c.String()},
		}, func() float64 { return float64(d.PeerWrites(c)) }))
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_gossip_members", Help: "Live gossip members, this node included.",
		}, func() float64 { return float64(g.Members()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_wireguard_config_writes_total", Help: "Configuration writes to the WireGuard device.",
		}, func() float64 { return float64(d.DeviceWrites()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers_resting", Help: "Peers off the WireGuard device while idle (--on-demand-after); their routes stay.",
		}, func() float64 { return float64(d.OnDemandStats().Resting) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_peer_rests_total", Help: "Times an idle peer left the WireGuard device.",
		}, func() float64 { return float64(d.OnDemandStats().Rests) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_peer_wakes_total", Help: "Times a resting peer came back to the WireGuard device (a packet to it or its handshake).",
		}, func() float64 { return float64(d.OnDemandStats().Wakes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_peer_wake_requests_total", Help: "Wakes of resting peers asked for, by cause: a packet to the peer, or its handshake.", ConstLabels: prometheus.Labels{"cause": "packet"},
		}, func() float64 { return float64(d.OnDemandStats().WakesByPacket) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_peer_wake_requests_total", Help: "Wakes of resting peers asked for, by cause: a packet to the peer, or its handshake.", ConstLabels: prometheus.Labels{"cause": "handshake"},
		}, func() float64 { return float64(d.OnDemandStats().WakesByInit) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_peer_wake_dropped_packets_total", Help: "Packets (and handshake initiations) dropped while their resting peer came back: over the bounded queues.",
		}, func() float64 { return float64(d.OnDemandStats().HeldDropped) }))
}
