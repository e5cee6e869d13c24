// Package dashboards builds weft's Grafana dashboards with the Grafana
// Foundation SDK. The chart ships them as JSON (deploy/helm/weft/files/
// dashboards, in a ConfigMap for Grafana's dashboard sidecar); a test
// checks the committed files are what this package builds, and that every
// weft series they query is one the agent exports. Regenerate with
// `make dashboards`.
package dashboards

//lint:file-ignore SA1019 the classic dashboard model (SDK package dashboard) is what Grafana's sidecar and file provisioning load on every Grafana version; dashboardv2 is the newer app-platform resource

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dir is where the chart keeps the generated JSON, relative to the
// repository's root.
const Dir = "deploy/helm/weft/files/dashboards"

// LayoutFile is the picture of the mesh dashboard's panels in the README.
const LayoutFile = "docs/dashboard-mesh.svg"

// ds is the Prometheus data source the dashboards query: the one the
// ${datasource} variable picks.
var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// node restricts a query to the chosen nodes (the scraping config sets
// instance to the node's name).
const node = `instance=~"$node"`

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend)
}

func variables(b *dashboard.DashboardBuilder) *dashboard.DashboardBuilder {
	return b.
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("node").Label("Node").Datasource(ds).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(weft_node_info, instance)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Multi(true).IncludeAll(true).AllValue(".*"))
}

func timeSeries(title, unit, desc string, qs ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Datasource(ds).Height(8).Span(12)
	for _, q := range qs {
		p.WithTarget(q)
	}
	return p
}

func statPanel(title, desc, expr string, red float64) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(desc).Datasource(ds).Height(4).Span(6).
		WithTarget(query(expr, "").Instant()).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps([]dashboard.Threshold{
			{Value: nil, Color: "green"}, {Value: cog.ToPtr(red), Color: "red"},
		}))
}

// Mesh is the cluster's encrypted mesh: nodes, peers, sessions, keys and
// the proof of encryption (where pod traffic left).
func Mesh() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("weft / mesh").Uid("weft-mesh").
		Tags([]string{"weft", "wireguard", "network"}).Refresh("30s").Time("now-1h", "now").Timezone(common.TimeZoneBrowser).
		Description("weft's encrypted pod network: peers and their WireGuard sessions, post-quantum preshared keys, and where pod traffic leaves each node (tunnel, direct path, in the clear).")
	b = variables(b).
		WithRow(dashboard.NewRowBuilder("Overview")).
		WithPanel(statPanel("Nodes", "Agents reporting.", `count(weft_node_info{`+node+`})`, 1e9)).
		WithPanel(statPanel("Stale sessions", "Peers without a WireGuard handshake for over 3 minutes (alert WeftPeerHandshakeStale).",
			`count(weft_peer_last_handshake_age_seconds{`+node+`} > 180) or vector(0)`, 1)).
		WithPanel(statPanel("Pairs without a preshared key", "Encrypted peers whose tunnel holds no post-quantum preshared key.",
			`count(weft_peer_preshared_key{`+node+`} == 0) or vector(0)`, 1)).
		WithPanel(statPanel("Plaintext packets (1h)", "Pod traffic that left a node for another node's pods in the clear, outside direct paths: must be 0 (alert WeftPlaintextPodTraffic).",
			`sum(increase(weft_pod_packets_total{path="plaintext",`+node+`}[1h])) or vector(0)`, 1)).
		WithRow(dashboard.NewRowBuilder("Proof of encryption")).
		WithPanel(timeSeries("Pod traffic by path", "bps", "Bits per second this node's pods send to other nodes' pods, by the way they leave: tunnel (encrypted), direct (underlay, by design), plaintext (must stay 0).",
			query(`sum by (instance, path) (rate(weft_pod_bytes_total{`+node+`}[$__rate_interval])) * 8`, "{{instance}} {{path}}"))).
		WithPanel(timeSeries("Dropped pod packets", "pps", "Packets weft dropped: strict (no tunnel to send them in, --strict-encryption) and policy (NetworkPolicy).",
			query(`sum by (instance, reason) (rate(weft_dropped_packets_total{`+node+`}[$__rate_interval]))`, "{{instance}} {{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Peers")).
		WithPanel(timeSeries("Handshake age", "s", "Seconds since each peer's last WireGuard handshake; a live session renews every 2 minutes.",
			query(`weft_peer_last_handshake_age_seconds{`+node+`}`, "{{instance}} → {{peer}}"))).
		WithPanel(timeSeries("Tunnel throughput", "bps", "Bits per second through the tunnel, per peer (received and sent).",
			query(`sum by (instance) (rate(weft_peer_receive_bytes_total{`+node+`}[$__rate_interval])) * 8`, "{{instance}} received"),
			query(`sum by (instance) (rate(weft_peer_transmit_bytes_total{`+node+`}[$__rate_interval])) * 8`, "{{instance}} sent"))).
		WithPanel(timeSeries("Preshared key age", "s", "Seconds since each pair agreed its post-quantum preshared key (rotated every pskRotation).",
			query(`weft_peer_preshared_key_age_seconds{`+node+`}`, "{{instance}} → {{peer}}"))).
		WithPanel(timeSeries("Path MTU", "bytes", "The MTU pod packets to each peer get; below the tunnel's, path MTU discovery lowered it (alert WeftPathMTULowered).",
			query(`weft_peer_mtu_bytes{`+node+`}`, "{{instance}} → {{peer}}"),
			query(`weft_tunnel_mtu_bytes{`+node+`}`, "{{instance}} tunnel"))).
		WithPanel(table.NewPanelBuilder().Title("Peers by path").Description("Each node's peers and how pod traffic travels to them.").Datasource(ds).Height(8).Span(24).
			WithTarget(query(`weft_peer_path{`+node+`}`, "").Instant().Format(prometheus.PromQueryFormatTable)))
	return b
}

// Agent is the agents' own health: reconciles, NetworkPolicy syncs,
// nftables re-assertions, gossip, API requests, CPU and memory.
func Agent() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("weft / agent").Uid("weft-agent").
		Tags([]string{"weft", "network"}).Refresh("30s").Time("now-1h", "now").Timezone(common.TimeZoneBrowser).
		Description("The weft agents' own work: data-plane reconciles, NetworkPolicy syncs, nftables re-assertions, gossip and their CPU and memory.")
	b = variables(b).
		WithRow(dashboard.NewRowBuilder("Control loop")).
		WithPanel(timeSeries("Reconciles", "ops", "Data plane reconciles per second, by result; errors for 5 minutes raise WeftReconcileFailing.",
			query(`sum by (instance, result) (rate(weft_reconciles_total{`+node+`}[$__rate_interval]))`, "{{instance}} {{result}}"))).
		WithPanel(timeSeries("Reconcile pass", "s", "How long one pass of the control loop takes, 50th and 99th percentile: a Node change waits for the pass under way and its own.",
			query(`histogram_quantile(0.5, sum by (instance, le) (rate(weft_reconcile_duration_seconds_bucket{`+node+`}[$__rate_interval])))`, "{{instance}} p50"),
			query(`histogram_quantile(0.99, sum by (instance, le) (rate(weft_reconcile_duration_seconds_bucket{`+node+`}[$__rate_interval])))`, "{{instance}} p99"))).
		WithPanel(timeSeries("NetworkPolicy syncs", "ops", "NetworkPolicy syncs to nftables per second, by result; errors for 5 minutes raise WeftPolicySyncFailing.",
			query(`sum by (instance, result) (rate(weft_policy_syncs_total{`+node+`}[$__rate_interval]))`, "{{instance}} {{result}}"))).
		WithPanel(timeSeries("WireGuard writes", "ops", "Configuration writes and peers written per second, by cause: a Node change is O(1) plan writes; rotations, rests and wakes write peers too.",
			query(`rate(weft_wireguard_config_writes_total{`+node+`}[$__rate_interval])`, "{{instance}} config writes"),
			query(`rate(weft_wireguard_peer_writes_total{`+node+`}[$__rate_interval])`, "{{instance}} peers written ({{cause}})"))).
		WithPanel(timeSeries("nftables re-assertions", "short", "Times weft found its nftables objects changed from outside and wrote them again (alert WeftNftablesReasserted).",
			query(`increase(weft_nftables_reasserts_total{`+node+`}[$__rate_interval])`, "{{instance}}"))).
		WithRow(dashboard.NewRowBuilder("Peers and gossip")).
		WithPanel(timeSeries("Peers", "short", "WireGuard peers installed, and those resting (not answering).",
			query(`weft_peers{`+node+`}`, "{{instance}} peers"),
			query(`weft_peers_dormant{`+node+`}`, "{{instance}} resting"))).
		WithPanel(timeSeries("Gossip", "short", "Live gossip members, and streams refused by their limits (alert WeftGossipStreamsRefused).",
			query(`weft_gossip_members{`+node+`}`, "{{instance}} members"),
			query(`sum by (instance) (increase(weft_gossip_streams_refused_total{`+node+`}[$__rate_interval]))`, "{{instance}} refused"))).
		WithRow(dashboard.NewRowBuilder("Resources")).
		WithPanel(timeSeries("CPU", "percentunit", "The agent's CPU, in cores (the data plane runs in the agent: this includes encryption).",
			query(`rate(process_cpu_seconds_total{`+node+`,job=~".*weft.*"}[$__rate_interval])`, "{{instance}}"))).
		WithPanel(timeSeries("Memory", "bytes", "The agent's resident memory and Go heap.",
			query(`process_resident_memory_bytes{`+node+`,job=~".*weft.*"}`, "{{instance}} RSS"),
			query(`go_memstats_heap_inuse_bytes{`+node+`,job=~".*weft.*"}`, "{{instance}} heap")))
	return b
}

// All are the dashboards by file name.
func All() map[string]*dashboard.DashboardBuilder {
	return map[string]*dashboard.DashboardBuilder{"weft-mesh.json": Mesh(), "weft-agent.json": Agent()}
}

// Render builds a dashboard into the JSON the chart ships.
func Render(b *dashboard.DashboardBuilder) ([]byte, error) {
	d, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return append(out, '\n'), nil
}
