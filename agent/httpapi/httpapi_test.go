package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// fakeView counts the device readings the API asks for.
type fakeView struct {
	reads int
	ready error
	mesh  Mesh
	peers []api.PeerStatus // the peers Status reports (else one, node2)
}

func (f *fakeView) Status() (api.Status, error) {
	f.reads++
	if f.peers != nil {
		return api.Status{Node: api.NodeStatus{Name: f.mesh.Self.Name}, Peers: f.peers}, nil
	}
	return api.Status{Node: api.NodeStatus{Name: f.mesh.Self.Name}, Peers: []api.PeerStatus{{Name: "node2", Path: "encrypted", PresharedKey: true}}}, nil
}

// MetricsStatus is Status without the resting peers.
func (f *fakeView) MetricsStatus() (api.Status, error) {
	st, err := f.Status()
	st.Peers = slices.DeleteFunc(slices.Clone(st.Peers), func(p api.PeerStatus) bool { return p.Resting })
	return st, err
}
func (f *fakeView) Mesh() Mesh   { return f.mesh }
func (f *fakeView) Ready() error { return f.ready }
func (f *fakeView) Debug(_ context.Context, what string) ([]byte, error) {
	return []byte(what + "\n"), nil
}

func node(t *testing.T, name, cidr, ep string) peer.NodeInfo {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return peer.NodeInfo{Name: name, PublicKey: k.PublicKey(), Endpoint: netip.MustParseAddrPort(ep), PodCIDRs: []netip.Prefix{netip.MustParsePrefix(cidr)}}
}

// get asks h as a process on the node does (from loopback).
func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	return getFrom(t, h, "127.0.0.1:40000", method, path)
}

func getFrom(t *testing.T, h http.Handler, from, method, path string) (int, string) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = from
	h.ServeHTTP(rec, r)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestAPIOnlyOnTheNode: a client off the node (a pod, another node: the
// chart's agent listens on the host network) gets the probes and the
// metrics, never the API; the node itself (and kubectl weft's port-forward,
// which the runtime opens from loopback) gets both.
func TestAPIOnlyOnTheNode(t *testing.T) {
	h := New(&fakeView{}, prometheus.NewRegistry(), "/ctl.sock").Handler()
	for _, path := range []string{"/healthz", "/metrics"} {
		if code, body := getFrom(t, h, "10.244.1.5:5555", "GET", path); code != http.StatusOK {
			t.Errorf("%s from a pod: %d %q, want 200", path, code, body)
		}
	}
	for _, path := range []string{"/v1/status", "/v1/peers", "/v1/showconf/node/x", "/v1/debug/nftables"} {
		if code, _ := getFrom(t, h, "10.244.1.5:5555", "GET", path); code != http.StatusForbidden {
			t.Errorf("%s from a pod: %d, want 403", path, code)
		}
		if code, _ := getFrom(t, h, "[::ffff:10.99.0.12]:5555", "GET", path); code != http.StatusForbidden {
			t.Errorf("%s from another node: %d, want 403", path, code)
		}
	}
	for _, from := range []string{"127.0.0.1:5555", "[::1]:5555"} {
		if code, body := getFrom(t, h, from, "GET", "/v1/debug/wireguard"); code != http.StatusOK || body != "wireguard\n" {
			t.Errorf("/v1/debug/wireguard from %s: %d %q", from, code, body)
		}
	}
	if code, _ := get(t, h, "GET", "/v1/debug/secrets"); code != http.StatusNotFound {
		t.Errorf("/v1/debug/secrets: %d, want 404", code)
	}
}

// TestStatusReadsTheDeviceOncePerTTL: any local process may ask as often
// as it likes; the device is read once per statusTTL, and again at once
// after the loop applied a change.
func TestStatusReadsTheDeviceOncePerTTL(t *testing.T) {
	v := &fakeView{mesh: Mesh{Self: node(t, "node1", "10.244.1.0/24", "192.0.2.1:51820")}}
	a := New(v, prometheus.NewRegistry(), "/var/lib/weft/control.sock")
	h := a.Handler()
	for range 50 {
		if code, body := get(t, h, "GET", "/v1/status"); code != 200 || !strings.Contains(body, `"node1"`) {
			t.Fatalf("status: %d %s", code, body)
		}
		get(t, h, "GET", "/v1/peers")
	}
	if v.reads != 1 {
		t.Errorf("100 requests read the device %d times, want 1", v.reads)
	}
	a.Invalidate()
	get(t, h, "GET", "/v1/status")
	if v.reads != 2 {
		t.Errorf("after Invalidate the device was read %d times in all, want 2", v.reads)
	}
}

// A reading is let go once it can no longer answer (at thousands of peers
// it is megabytes, kept from one scrape to the next for nothing).
func TestStatusLetGoAfterTTL(t *testing.T) {
	v := &fakeView{mesh: Mesh{Self: node(t, "node1", "10.244.1.0/24", "192.0.2.1:51820")}}
	a := New(v, prometheus.NewRegistry(), "/var/lib/weft/control.sock")
	if code, _ := get(t, a.Handler(), "GET", "/v1/status"); code != 200 {
		t.Fatalf("status: %d", code)
	}
	held := func() bool {
		a.cache.mu.Lock()
		defer a.cache.mu.Unlock()
		return !reflect.ValueOf(a.cache.st).IsZero()
	}
	if !held() {
		t.Fatal("the reading is not cached")
	}
	for end := time.Now().Add(statusTTL + 2*time.Second); held(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the reading is still held %v after it was read (TTL %v)", statusTTL+2*time.Second, statusTTL)
		}
	}
}

func TestReadyzSaysWhy(t *testing.T) {
	v := &fakeView{ready: errors.New("first reconcile not done")}
	h := New(v, prometheus.NewRegistry(), "/s").Handler()
	if code, body := get(t, h, "GET", "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "first reconcile not done") {
		t.Errorf("readyz before ready: %d %q", code, body)
	}
	v.ready = nil
	if code, _ := get(t, h, "GET", "/readyz"); code != 200 {
		t.Errorf("readyz when ready: %d", code)
	}
}

func TestRotateKeyRefusedOnHTTP(t *testing.T) {
	h := New(&fakeView{}, prometheus.NewRegistry(), "/var/lib/weft/control.sock").Handler()
	if code, body := get(t, h, "POST", api.RotateKeyPath); code != http.StatusForbidden || !strings.Contains(body, "/var/lib/weft/control.sock") {
		t.Errorf("rotate-key on the HTTP port: %d %q, want 403 naming the control socket", code, body)
	}
}

// TestShowconf: a node's configuration lists every other node as a peer
// with its pod CIDRs, and never a private key; a Peer object's lists every
// node, with the Service range through the answering node when asked.
func TestShowconf(t *testing.T) {
	self, n2 := node(t, "node1", "10.244.1.0/24", "192.0.2.1:51820"), node(t, "node2", "10.244.2.0/24", "192.0.2.2:51820")
	ek, _ := wgtypes.GeneratePrivateKey()
	ext := peer.External{Name: "laptop", PublicKey: ek.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.7/32")}}
	h := New(&fakeView{mesh: Mesh{Self: self, Nodes: []peer.NodeInfo{n2}, Externals: []peer.External{ext}}}, prometheus.NewRegistry(), "/s").Handler()

	code, body := get(t, h, "GET", "/v1/showconf/node/node2")
	if code != 200 || !strings.Contains(body, "PublicKey = "+self.PublicKey.String()) || !strings.Contains(body, "10.244.1.0/24") || strings.Contains(body, n2.PublicKey.String()+"\nEndpoint") {
		t.Errorf("node2's configuration:\n%s", body)
	}
	if !strings.Contains(body, "PrivateKey = <") {
		t.Errorf("the [Interface] must name the key, not hold one:\n%s", body)
	}
	code, body = get(t, h, "GET", "/v1/showconf/peer/laptop?serviceCIDR=10.96.0.0/12")
	if code != 200 || !strings.Contains(body, "Address = 10.99.0.7/32") || !strings.Contains(body, "AllowedIPs = 10.244.1.0/24, 10.96.0.0/12") || !strings.Contains(body, "AllowedIPs = 10.244.2.0/24\n") {
		t.Errorf("laptop's configuration:\n%s", body)
	}
	for path, want := range map[string]int{
		"/v1/showconf/peer/nobody":                        404,
		"/v1/showconf/node/nobody":                        404,
		"/v1/showconf/peer/laptop?serviceCIDR=10.1.2.3/8": 400,
		"/v1/showconf/other/x":                            404,
	} {
		if code, body := get(t, h, "GET", path); code != want {
			t.Errorf("%s: %d %q, want %d", path, code, body, want)
		}
	}
}

// peerStatuses is n peers as a 5000-node cluster's agent reports them.
func peerStatuses(n int) []api.PeerStatus {
	ps := make([]api.PeerStatus, n)
	for i := range ps {
		ps[i] = api.PeerStatus{Name: fmt.Sprintf("node-%05d", i), Path: "encrypted", Location: "rack-1", MTU: 1420,
			PresharedKey: i%2 == 0, PresharedKeyAgeSeconds: int64(i), RxBytes: int64(i) << 20, TxBytes: int64(i) << 21,
			LatestHandshake: "2026-12-07T11:00:00Z", Idle: i%3 == 0}
	}
	return ps
}

// BenchmarkMetrics5000 is one scrape of an agent with 5000 peers (the
// reading of the device cached, as within statusTTL), its answer counted
// and let go as a connection would.
func BenchmarkMetrics5000(b *testing.B) {
	v := &fakeView{peers: peerStatuses(5000)}
	reg := prometheus.NewRegistry()
	a := New(v, reg, "/s")
	reg.MustRegister(a.Collector())
	h := a.Handler()
	r := httptest.NewRequest("GET", "/metrics", nil)
	r.RemoteAddr = "10.244.1.5:5555"
	b.ReportAllocs()
	for b.Loop() {
		w := &countingWriter{header: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != 0 || w.n < 5000*7*40 {
			b.Fatalf("scrape: status %d, %d bytes", w.code, w.n)
		}
	}
}

// countingWriter is a ResponseWriter that counts the body and keeps none.
type countingWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// TestMetricsPerPeer: a scrape parses as Prometheus' text format (a
// label value with a quote, a backslash and a newline included), with
// the registry's families and the series of every peer MetricsStatus
// reports (not a resting one): a direct peer has no tunnel series, an
// idle one no handshake age.
func TestMetricsPerPeer(t *testing.T) {
	hs := time.Now().Add(-90 * time.Second).UTC().Format(time.RFC3339)
	v := &fakeView{peers: []api.PeerStatus{
		{Name: "node2", Path: "encrypted", Location: `rack "a"\` + "\n2", MTU: 1420, PresharedKey: true, PresharedKeyAgeSeconds: 30, RxBytes: 7, TxBytes: 1 << 40, LatestHandshake: hs},
		{Name: "node3", Path: "direct", Location: "rack-1", MTU: 1500, LatestHandshake: hs},
		{Name: "node4", Path: "encrypted", MTU: 1380, PresharedKeyError: "refused", LatestHandshake: hs, Idle: true},
		{Name: "node5", Path: "encrypted", MTU: 1420, PresharedKey: true, RxBytes: 5, Resting: true},
	}}
	reg := prometheus.NewRegistry()
	a := New(v, reg, "/s")
	reg.MustRegister(a.Collector(), prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_test_total", Help: "A registry family."}))
	code, body := get(t, a.Handler(), "GET", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, body)
	}
	got := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			if !slices.IsSorted(ls) {
				t.Errorf("%s: labels %v not in order (client_golang's, which tools that match a series as text expect)", name, ls)
			}
			got[name+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		`weft_test_total{}`: 0,
		`weft_node_info{intra_location="",location="",pq="",strict_encryption="false",version=""}`: 1,
		`weft_tunnel_mtu_bytes{}`: 0,
		`weft_peer_path{location="rack \"a\"\\\n2",path="encrypted",peer="node2"}`: 1,
		`weft_peer_path{location="rack-1",path="direct",peer="node3"}`:             1,
		`weft_peer_path{location="",path="encrypted",peer="node4"}`:                1,
		`weft_peer_mtu_bytes{peer="node2"}`:                                        1420,
		`weft_peer_mtu_bytes{peer="node3"}`:                                        1500,
		`weft_peer_mtu_bytes{peer="node4"}`:                                        1380,
		`weft_peer_preshared_key{peer="node2"}`:                                    1,
		`weft_peer_preshared_key{peer="node4"}`:                                    0,
		`weft_peer_preshared_key_age_seconds{peer="node2"}`:                        30,
		`weft_peer_receive_bytes_total{peer="node2"}`:                              7,
		`weft_peer_receive_bytes_total{peer="node4"}`:                              0,
		`weft_peer_transmit_bytes_total{peer="node2"}`:                             1 << 40,
		`weft_peer_transmit_bytes_total{peer="node4"}`:                             0,
		`weft_peer_last_handshake_age_seconds{peer="node2"}`:                       90,
	}
	age := `weft_peer_last_handshake_age_seconds{peer="node2"}`
	if a := got[age]; a >= 90 && a < 95 {
		got[age] = 90
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scraped:\n%v\nwant:\n%v\nthe scrape:\n%s", got, want, body)
	}
}
