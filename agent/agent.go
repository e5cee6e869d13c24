package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/policy"
)

const (
	resyncInterval = 30 * time.Second
	// cacheGrace is how long, in standalone mode, a peer restored from the
	// cache stays without gossip confirming it.
	cacheGrace = 60 * time.Second
)

// Agent runs one node's control plane.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	self    NodeInfo
	reg     *Registry
	kube    *Kube   // nil in standalone mode
	netpol  *NetPol // nil unless enforcing NetworkPolicy
	dev     *mesh.Device
	mesh    *mesh.Mesh
	gossip  *Gossip
	metrics *metrics
	ready   atomic.Bool
	saved   []NodeInfo
	cniConf []byte // written once the first reconcile succeeds
	// published: the Node carries our annotations and condition (Kubernetes mode).
	annotated, conditioned bool
	masq                   *policy.Masquerade // last applied
}

// Run starts the agent and blocks until ctx is done or the device stops. A
// value on resync (SIGHUP in weft-agent) forces a reconcile now.
// Everything that can fail on bad input or a busy port fails before the
// tunnel is touched, and a failure undoes what was started.
func Run(ctx context.Context, cfg Config, log *slog.Logger, resync <-chan struct{}) error {
	a := &Agent{cfg: cfg, log: log}
	// Ports first: a busy port must fail before anything is written or created.
	if err := mesh.CheckPortFree(cfg.ListenPort); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http address %s: %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()
	if cfg.KubeMode {
		if err := a.learnSelf(ctx); err != nil {
			return err
		}
	}
	adv := a.cfg.AdvertiseAddress
	if !adv.IsValid() {
		if adv, err = mesh.DefaultRouteSource(); err != nil {
			return err
		}
	}
	mtu := cfg.MTU
	if mtu == 0 {
		u, err := mesh.UnderlayMTU(adv)
		if err != nil {
			return fmt.Errorf("advertise address %s: %w", adv, err)
		}
		mtu = u - mesh.Overhead
	}
	key, err := mesh.LoadOrCreatePrivateKey(filepath.Join(cfg.StateDir, mesh.PrivateKeyFile))
	if err != nil {
		return err
	}
	var gossipKey []byte
	if cfg.GossipKeyFile != "" {
		k, err := mesh.ReadKeyFile(cfg.GossipKeyFile)
		if err != nil {
			return fmt.Errorf("gossip key: %w", err)
		}
		gossipKey = k[:]
	}
	a.self = NodeInfo{
		Name:       cfg.NodeName,
		PublicKey:  key.PublicKey(),
		Endpoint:   netip.AddrPortFrom(adv, uint16(cfg.ListenPort)),
		GossipAddr: netip.AddrPortFrom(adv, uint16(cfg.GossipPort)),
		PodCIDRs:   a.cfg.PodCIDRs,
	}
	// Metrics exist before any source can report a rejection; the two
	// functions read the gossip and the device only when scraped, which the
	// HTTP server allows once both exist.
	a.metrics = newMetrics(func() float64 { return float64(a.gossip.Members()) },
		func() float64 { return float64(a.mesh.DeviceWrites()) })
	a.reg = NewRegistry(a.self, cfg.KubeMode, a.rejected)

	cached, err := loadCache(cfg.StateDir)
	if err != nil {
		log.Warn("ignoring peer cache", "err", err)
	}
	for _, n := range cached {
		a.reg.Set(SourceCache, n)
	}
	a.saved = cached

	a.gossip, err = StartGossip(GossipConfig{
		Name: cfg.NodeName, Bind: adv, Port: cfg.GossipPort, SecretKey: gossipKey, Seeds: a.seeds,
	}, a.self, a.reg, log)
	if err != nil {
		return err
	}
	leave := true
	defer func() { a.gossip.Stop(leave) }()

	a.dev, err = mesh.OpenDevice(mesh.DeviceConfig{
		Name: cfg.Interface, MTU: mtu, RunDir: cfg.RunDir, PrivateKey: key,
		ListenPort: cfg.ListenPort, Logger: log, Verbose: cfg.LogLevel == "debug",
	})
	if err != nil {
		leave = false
		return err
	}
	defer a.dev.Close()
	if a.mesh, err = mesh.New(a.dev); err != nil {
		return err
	}
	defer a.mesh.Close()
	if err := enableForwarding(); err != nil {
		return err
	}
	if err := looseReversePath(); err != nil {
		a.log.Warn("pods cannot reach other nodes' host-network endpoints (the API server among them)", "err", err)
	}
	if err := policy.EnsureAntiSpoof(ctx, cni.HostVethPrefix); err != nil {
		return err
	}
	if err := policy.EnsureTransportNotrack(ctx, cfg.ListenPort); err != nil {
		return err
	}
	if a.cniConf, err = CNIConfList(a.cfg, mtu); err != nil {
		return err
	}
	if a.kube != nil {
		if err := a.kube.Start(ctx, a.reg); err != nil {
			return err
		}
		defer a.kube.Stop()
	}
	if cfg.enforcesPolicy() {
		var own []netip.Addr
		for _, p := range cfg.PodCIDRs {
			own = append(own, FirstAddress(p))
		}
		if a.netpol, err = newNetPol(a.kube.client, a.cfg, own, a.metrics, log); err != nil {
			return err
		}
		stop, err := a.netpol.serveSocket()
		if err != nil {
			return err
		}
		defer stop()
		a.netpol.Start(ctx)
		defer a.netpol.Stop()
	}

	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("agent started", "node", cfg.NodeName, "public_key", a.self.PublicKey.String(),
		"endpoint", a.self.Endpoint.String(), "pod_cidrs", fmt.Sprint(a.cfg.PodCIDRs), "mtu", mtu, "kubernetes", cfg.KubeMode)
	return a.loop(ctx, resync)
}

// learnSelf reads this node's pod CIDRs and InternalIP from its Node (flags
// override). While the API server does not answer it falls back to what it
// learned last time, so a restarted agent comes back without the API.
func (a *Agent) learnSelf(ctx context.Context) error {
	client, err := kubeClient(a.cfg.Kubeconfig)
	if err != nil {
		return err
	}
	a.kube = newKube(client, a.cfg.NodeName, a.log)
	cachePath := filepath.Join(a.cfg.StateDir, "self.json")
	var cidrs []netip.Prefix
	var ip netip.Addr
	for attempt := 0; ; attempt++ {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		node, err := a.kube.fetchSelf(fctx)
		cancel()
		if err == nil {
			if cidrs, ip, err = selfFromNode(node); err != nil {
				return err
			}
			b, _ := json.Marshal(selfCache{PodCIDRs: prefixStrings(cidrs), InternalIP: ip.String()})
			os.MkdirAll(a.cfg.StateDir, 0o700)
			atomicfile.Write(cachePath, b, 0o600)
			break
		}
		if c, ok := loadSelfCache(cachePath); ok {
			a.log.Warn("API server unreachable; starting from the cached Node", "err", err)
			cidrs, ip = c.cidrs, c.ip
			break
		}
		if attempt%10 == 0 {
			a.log.Warn("waiting for the API server to read this Node", "node", a.cfg.NodeName, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if len(a.cfg.PodCIDRs) == 0 {
		a.cfg.PodCIDRs = cidrs
	}
	if !a.cfg.AdvertiseAddress.IsValid() {
		a.cfg.AdvertiseAddress = ip
	}
	if len(a.cfg.PodCIDRs) == 0 {
		return errNoPodCIDRs
	}
	return nil
}

type selfCache struct {
	PodCIDRs   []string `json:"podCIDRs"`
	InternalIP string   `json:"internalIP"`
	cidrs      []netip.Prefix
	ip         netip.Addr
}

func loadSelfCache(path string) (selfCache, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 4096 {
		return selfCache{}, false
	}
	var c selfCache
	if json.Unmarshal(b, &c) != nil {
		return selfCache{}, false
	}
	if c.cidrs, err = ParsePodCIDRs(c.PodCIDRs); err != nil {
		return selfCache{}, false
	}
	c.ip, _ = netip.ParseAddr(c.InternalIP)
	return c, true
}

func (a *Agent) loop(ctx context.Context, kick <-chan struct{}) error {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	var expireCache <-chan time.Time
	if !a.cfg.KubeMode {
		expireCache = time.After(cacheGrace)
	}
	retry := time.NewTimer(0)
	retry.Stop()
	// Pods may be attached (the CNI config written) only once their
	// NetworkPolicy can be programmed.
	var policySynced <-chan struct{}
	if a.netpol != nil {
		policySynced = a.netpol.FirstSync()
	}
	if a.reconcile(ctx) {
		retry.Reset(time.Second)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.dev.Done():
			return errors.New("wireguard device stopped (was the interface deleted?)")
		case <-expireCache:
			a.reg.DeleteAll(SourceCache)
		case <-a.reg.Changed():
		case <-resync.C:
		case <-kick:
		case <-retry.C:
		case <-policySynced:
			policySynced = nil
		}
		if a.reconcile(ctx) {
			retry.Reset(time.Second)
		}
	}
}

// reconcile applies the registry's view to the data plane and, once that
// works, publishes readiness. It reports whether another pass is due soon:
// after a failure, while passive peers wait for their keepalive, or while
// the Node is not yet annotated.
func (a *Agent) reconcile(ctx context.Context) (again bool) {
	claims := a.reg.Peers()
	peers := make([]NodeInfo, len(claims))
	for i, c := range claims {
		peers[i] = c.NodeInfo
	}
	ch, err := a.mesh.Apply(Plan(a.self, peers))
	if err != nil {
		a.metrics.reconciles.WithLabelValues("error").Inc()
		a.log.Error("reconcile failed; retrying", "err", err)
		return true
	}
	a.metrics.peers.Set(float64(len(peers)))
	if ch.Empty() {
		a.metrics.reconciles.WithLabelValues("unchanged").Inc()
	} else {
		a.metrics.reconciles.WithLabelValues("changed").Inc()
		a.log.Info("reconciled", "peers", len(peers), "peers_written", ch.PeersWritten, "peers_removed", ch.PeersRemoved, "peers_deferred", ch.PeersDeferred,
			"routes_added", ch.RoutesAdded, "routes_removed", ch.RoutesRemoved,
			"addresses_added", ch.AddressesAdded, "addresses_removed", ch.AddressesRemoved)
	}
	if err := a.applyMasquerade(ctx, peers); err != nil {
		a.metrics.reconciles.WithLabelValues("error").Inc()
		a.log.Error("egress masquerade failed; retrying", "err", err)
		return true
	}
	if !slices.EqualFunc(peers, a.saved, sameNode) {
		if err := saveCache(a.cfg.StateDir, peers); err != nil {
			a.log.Warn("cannot save peer cache", "err", err)
		} else {
			a.saved = peers
		}
	}
	if !a.ready.Load() {
		if a.netpol != nil && !a.netpol.Healthy() {
			a.log.Debug("waiting for network policy to be programmed before writing the CNI config")
			return false
		}
		wrote, err := writeCNIConf(a.cfg.CNIConfDir, a.cniConf)
		if err != nil {
			a.log.Error("cannot write CNI config; retrying", "err", err)
			return true
		}
		a.ready.Store(true)
		a.log.Info("ready", "cni_conf", filepath.Join(a.cfg.CNIConfDir, CNIConfFile), "cni_conf_written", wrote)
	}
	return a.publish(ctx) || ch.PeersDeferred > 0
}

// applyMasquerade keeps the egress NAT in step with the mesh: every node's
// pod CIDRs and addresses are reached without NAT, the rest of the world
// sees the node's address. It writes nothing when nothing changed.
func (a *Agent) applyMasquerade(ctx context.Context, peers []NodeInfo) error {
	want := policy.Masquerade{Enabled: a.cfg.Masquerade, PodCIDRs: a.self.PodCIDRs}
	no := slices.Clone(a.cfg.NoMasquerade)
	for _, n := range append([]NodeInfo{a.self}, peers...) {
		no = append(no, n.PodCIDRs...)
		a := n.Endpoint.Addr()
		no = append(no, netip.PrefixFrom(a, a.BitLen()))
	}
	want.NoMasquerade = policy.Disjoint(no)
	if a.masq != nil && a.masq.Equal(want) {
		return nil
	}
	if err := policy.ApplyMasquerade(ctx, want); err != nil {
		return err
	}
	a.masq = &want
	return nil
}

// publish annotates this Node and sets its condition, once each; it reports
// whether something is still to be done.
func (a *Agent) publish(ctx context.Context) (pending bool) {
	if a.kube == nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !a.annotated {
		if err := a.kube.Publish(pctx, a.self); err != nil {
			a.log.Warn("cannot annotate node; retrying", "err", err)
			return true
		}
		a.annotated = true
		a.log.Info("node annotated", "node", a.cfg.NodeName)
	}
	if !a.conditioned {
		if err := a.kube.SetNetworkAvailable(pctx); err != nil {
			a.log.Warn("cannot set node condition; retrying", "err", err)
			return true
		}
		a.conditioned = true
	}
	return false
}

func (a *Agent) rejected(r Rejection) {
	a.metrics.rejections.WithLabelValues(r.Reason).Inc()
	a.log.Warn("refused peer", "node", r.Name, "reason", r.Reason, "detail", r.Detail)
	if a.kube != nil {
		a.kube.Event(r.Name, "WeftPeerRefused", fmt.Sprintf("weft-agent on %s refused this node as a peer (%s): %s", a.cfg.NodeName, r.Reason, r.Detail))
	}
}

// seeds are the --join seeds plus the gossip addresses of known peers
// (from Node annotations in Kubernetes, from the cache after a restart).
func (a *Agent) seeds() []string {
	out := slices.Clone(a.cfg.Join)
	for _, c := range a.reg.Peers() {
		if c.GossipAddr.IsValid() {
			out = append(out, c.GossipAddr.String())
		}
	}
	return out
}

func sameNode(a, b NodeInfo) bool {
	return a.Name == b.Name && a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
		a.GossipAddr == b.GossipAddr && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// looseReversePath turns strict reverse-path filtering (rp_filter=1, as on
// RHEL and in kind's nodes) into loose (2). A pod's packet to another node's
// own address crosses the underlay, and the reply comes back to it through
// the tunnel, so under strict filtering the other node drops the pod's packet
// (its route to the pod is weft0, not the interface it came in on). Where
// /proc/sys is read-only (an unprivileged pod), it says what to set instead.
func looseReversePath() error {
	const f = "/proc/sys/net/ipv4/conf/all/rp_filter"
	b, err := os.ReadFile(f)
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return nil
	}
	if err := os.WriteFile(f, []byte("2\n"), 0o644); err != nil {
		return fmt.Errorf("net.ipv4.conf.all.rp_filter is 1 (strict) and cannot be set to 2 (loose) here (%v); set it on the host", err)
	}
	return nil
}

// enableForwarding makes the node route between pods, the tunnel and the
// underlay, as every network plugin must. Where it is already on, nothing
// is written, so an unprivileged container (read-only /proc/sys) works on
// hosts that forward already (kubeadm requires net.ipv4.ip_forward=1).
func enableForwarding() error {
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %s is off and cannot be set (%v); set it on the host", f, err)
		}
	}
	return nil
}
