package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/policy"
)

// Claim sources, as shown in /v1/peers.
const (
	SourceGossip = "gossip"
	SourceCache  = "cache"
)

const (
	resyncInterval = 30 * time.Second
	// cacheGrace is how long a peer restored from the cache stays without any
	// live source confirming it.
	cacheGrace = 60 * time.Second
)

// Agent runs one node's control plane.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	self    NodeInfo
	reg     *Registry
	dev     *mesh.Device
	mesh    *mesh.Mesh
	gossip  *Gossip
	metrics *metrics
	ready   atomic.Bool
	saved   []NodeInfo
	cniConf []byte // written once the first reconcile succeeds
}

// Run starts the agent and blocks until ctx is done or the device stops. A
// value on resync (SIGHUP in weft-agent) forces a reconcile now.
// Everything that can fail on bad input or a busy port fails before the
// tunnel is touched, and a failure undoes what was started.
func Run(ctx context.Context, cfg Config, log *slog.Logger, resync <-chan struct{}) error {
	a := &Agent{cfg: cfg, log: log}
	adv := cfg.AdvertiseAddress
	if !adv.IsValid() {
		var err error
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
	// Ports first: a busy port must fail before anything is written or created.
	if err := mesh.CheckPortFree(cfg.ListenPort); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http address %s: %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()
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
		Endpoint:   netipAddrPort(adv, cfg.ListenPort),
		GossipAddr: netipAddrPort(adv, cfg.GossipPort),
		PodCIDRs:   cfg.PodCIDRs,
	}
	a.reg = NewRegistry(a.self, a.rejected)

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
	if err := policy.EnsureAntiSpoof(ctx, cni.HostVethPrefix); err != nil {
		return err
	}
	if a.cniConf, err = CNIConfList(cfg, mtu); err != nil {
		return err
	}
	a.metrics = newMetrics(func() float64 { return float64(a.gossip.Members()) },
		func() float64 { return float64(a.mesh.DeviceWrites()) })

	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("agent started", "node", cfg.NodeName, "public_key", a.self.PublicKey.String(),
		"endpoint", a.self.Endpoint.String(), "pod_cidrs", fmt.Sprint(cfg.PodCIDRs), "mtu", mtu)
	return a.loop(ctx, resync)
}

func (a *Agent) loop(ctx context.Context, kick <-chan struct{}) error {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	expireCache := time.After(cacheGrace)
	retry := time.NewTimer(0)
	retry.Stop()
	a.reconcile()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.dev.Done():
			return errors.New("wireguard device stopped (was the interface deleted?)")
		case <-expireCache:
			peers, src := a.reg.Peers()
			for _, n := range peers {
				if src[n.Name] == SourceCache {
					a.log.Info("dropping cached peer no source confirmed", "node", n.Name)
					a.reg.DeleteFrom(SourceCache, n.Name)
				}
			}
		case <-a.reg.Changed():
		case <-resync.C:
		case <-kick:
		case <-retry.C:
		}
		if again := a.reconcile(); again {
			retry.Reset(time.Second)
		}
	}
}

// reconcile applies the registry's view to the data plane. It reports
// whether another pass is due soon: after a failure, or when passive peers
// wait for their keepalive.
func (a *Agent) reconcile() (again bool) {
	peers, _ := a.reg.Peers()
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
	if !slices.EqualFunc(peers, a.saved, sameNode) {
		if err := saveCache(a.cfg.StateDir, peers); err != nil {
			a.log.Warn("cannot save peer cache", "err", err)
		} else {
			a.saved = peers
		}
	}
	if !a.ready.Load() {
		wrote, err := writeCNIConf(a.cfg.CNIConfDir, a.cniConf)
		if err != nil {
			a.log.Error("cannot write CNI config; retrying", "err", err)
			return true
		}
		a.ready.Store(true)
		a.log.Info("ready", "cni_conf", filepath.Join(a.cfg.CNIConfDir, CNIConfFile), "cni_conf_written", wrote)
	}
	return ch.PeersDeferred > 0
}

func (a *Agent) rejected(r Rejection) {
	if a.metrics != nil {
		a.metrics.rejections.WithLabelValues(r.Reason).Inc()
	}
	a.log.Warn("refused peer", "node", r.Name, "reason", r.Reason, "detail", r.Detail)
}

// seeds are the --join seeds plus the gossip addresses of cached peers.
func (a *Agent) seeds() []string {
	out := slices.Clone(a.cfg.Join)
	peers, _ := a.reg.Peers()
	for _, n := range peers {
		if n.GossipAddr.IsValid() {
			out = append(out, n.GossipAddr.String())
		}
	}
	return out
}

func sameNode(a, b NodeInfo) bool {
	return a.Name == b.Name && a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
		a.GossipAddr == b.GossipAddr && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// enableForwarding makes the node route between pods, the tunnel and the
// underlay, as every network plugin must.
func enableForwarding() error {
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding (%s): %w", f, err)
		}
	}
	return nil
}
