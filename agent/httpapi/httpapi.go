// Package httpapi is the agent's HTTP API on --http-addr: health and
// readiness, Prometheus metrics (with the per-peer series read from the
// status), the peers and status (/v1/status, /v1/peers), and wg-quick
// configurations rendered from the agent's view of the mesh
// (/v1/showconf). It only reads: what it serves comes through View, and
// nothing on this port changes the node (rotate-key is served on the
// root-only control socket; the old path here refuses it).
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
)

// View is what the API reads from the agent.
type View interface {
	// Status is a fresh reading: the node, and each peer as the registry
	// accepted it and the device sees it.
	Status() (api.Status, error)
	// MetricsStatus is Status for /metrics: the node, and the peers
	// except those resting (on-demand peers off the device): at thousands
	// of Nodes nearly all of them rest, and their series would stand
	// still while they made most of every scrape.
	MetricsStatus() (api.Status, error)
	// Mesh is this node, the node peers and the Peer objects as the last
	// reconcile accepted them.
	Mesh() Mesh
	// Ready is nil once the node is ready (first reconcile done, policy
	// programmed), else why it is not.
	Ready() error
	// Debug is a named reading for a bug report (DebugReadings).
	Debug(ctx context.Context, what string) ([]byte, error)
}

// DebugReadings are what GET /v1/debug/{what} serves: weft's nftables
// table, and the WireGuard device with its private and preshared keys
// hidden.
var DebugReadings = []string{"nftables", "wireguard"}

// Mesh is the agent's view of the mesh.
type Mesh struct {
	Self      peer.NodeInfo
	Nodes     []peer.NodeInfo // the accepted node peers, without Self
	Externals []peer.External // the accepted Peer objects
}

// API serves View over HTTP.
type API struct {
	view    View
	gather  prometheus.Gatherer
	control string      // the control socket's path, named in the rotate-key refusal
	cache   statusCache // View.Status
	mcache  statusCache // View.MetricsStatus
	// debugSlot admits one debug reading at a time.
	debugSlot chan struct{}
}

// New is the API over v, serving g's metrics; control is the path of the
// root-only control socket.
func New(v View, g prometheus.Gatherer, control string) *API {
	return &API{view: v, gather: g, control: control, debugSlot: make(chan struct{}, 1)}
}

// Handler serves the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.view.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /metrics", a.serveMetrics)
	mux.HandleFunc("GET /v1/peers", nodeOnly(a.servePeers))
	mux.HandleFunc("GET /v1/status", nodeOnly(a.serveStatus))
	mux.HandleFunc("GET /v1/showconf/{kind}/{name}", nodeOnly(a.serveShowconf))
	mux.HandleFunc("POST "+api.RotateKeyPath, a.refuseRotateKey)
	mux.HandleFunc("GET /v1/debug/{what}", nodeOnly(a.serveDebug))
	return mux
}

// nodeOnly serves h to the node itself only (a loopback source): the
// chart's agent listens on every address of the host network, where
// Prometheus scrapes /metrics and the kubelet probes; the API (the mesh's
// keys and endpoints, nftables, the device) is for weftctl on the node and
// for kubectl weft, whose port-forward the container runtime opens from
// the node's loopback (RBAC: pods/portforward).
func nodeOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "the agent's API answers only on its node (weftctl there, or kubectl weft through the API server)", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// serveDebug serves one debug reading at a time (each lists the whole
// table or device: anything that reaches the port could otherwise make the
// agent do that work as often as it likes).
func (a *API) serveDebug(w http.ResponseWriter, r *http.Request) {
	what := r.PathValue("what")
	if !slices.Contains(DebugReadings, what) {
		http.Error(w, fmt.Sprintf("no debug reading %q (%s)", what, strings.Join(DebugReadings, ", ")), http.StatusNotFound)
		return
	}
	select {
	case a.debugSlot <- struct{}{}:
		defer func() { <-a.debugSlot }()
	case <-r.Context().Done():
		return
	}
	out, err := a.view.Debug(r.Context(), what)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(out)
}

// Pprof serves Go's profiles: only on --pprof-addr, which must be a
// loopback address (a profile or trace costs CPU for as long as asked).
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// refuseRotateKey answers the old place of rotate-key, the HTTP port, which
// any local process can reach.
func (a *API) refuseRotateKey(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "rotate-key is served only on the agent's root-only socket "+a.control+" (weftctl rotate-key, as root on the node)", http.StatusForbidden)
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

// Status is View.Status, read at most once per statusTTL: callers that
// come while it is read wait for that reading.
func (a *API) Status() (api.Status, error) { return a.cache.read(a.view.Status) }

// metricsStatus is View.MetricsStatus, read at most once per statusTTL
// (/metrics answers off the node too).
func (a *API) metricsStatus() (api.Status, error) { return a.mcache.read(a.view.MetricsStatus) }

// read is the cached reading, or a fresh one from fn once it is
// statusTTL old.
func (c *statusCache) read(fn func() (api.Status, error)) (api.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= statusTTL {
		c.st, c.err = fn()
		c.at = time.Now()
		// Let go of it once it can no longer answer: at thousands of
		// peers a status is megabytes, and scrapes come every 15-30 s.
		time.AfterFunc(statusTTL, c.expire)
	}
	return c.st, c.err
}

// expire drops a reading older than statusTTL.
func (c *statusCache) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= statusTTL {
		c.st, c.err = api.Status{}, nil
	}
}

// Invalidate makes the next reading fresh: the loop calls it after each
// change it applies, so an answer never predates a change already made.
func (a *API) Invalidate() {
	for _, c := range []*statusCache{&a.cache, &a.mcache} {
		c.mu.Lock()
		c.at = time.Time{}
		c.mu.Unlock()
	}
}

func (a *API) serveStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.Status()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

func (a *API) servePeers(w http.ResponseWriter, r *http.Request) {
	st, err := a.Status()
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
