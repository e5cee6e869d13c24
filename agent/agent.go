package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/agent/config"
	"github.com/weftnet/weft/agent/httpapi"
	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/handover"
	"github.com/weftnet/weft/internal/connlimit"
	"github.com/weftnet/weft/internal/httpserve"
	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/netpol"
	"github.com/weftnet/weft/nft"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
	"github.com/weftnet/weft/source/gossip"
	"github.com/weftnet/weft/source/kube"
)

const (
	resyncInterval = 30 * time.Second
	// cacheGrace is how long, in standalone mode, a peer restored from the
	// cache stays without gossip confirming it.
	cacheGrace = 60 * time.Second
)

// Agent runs one node's control plane.
type Agent struct {
	cfg        config.Config
	log        *slog.Logger
	self       peer.NodeInfo
	reg        *peer.Registry
	clients    *kubeclient.Clients // nil in standalone mode
	kube       *kube.Source        // nil in standalone mode
	netpol     *netpol.Controller  // nil unless enforcing NetworkPolicy
	dev        *mesh.Device
	mesh       plane                     // the data plane the loop writes (a *mesh.Mesh on dev)
	stopped    <-chan struct{}           // closed when the device stops
	routeDrift <-chan struct{}           // a weft route changed outside Apply (mesh.WatchRoutes)
	meshUp     atomic.Pointer[mesh.Mesh] // a.mesh, for goroutines started before it exists (gossip's seeds)
	gossip     *gossip.Source
	metrics    *metrics
	ready      atomic.Bool
	saved      []peer.NodeInfo // in the peer cache (cache.go), saved at savedAt
	savedAt    time.Time
	saveDue    <-chan time.Time // a change waits to be saved
	cniConf    []byte           // written once the first reconcile succeeds
	// published: the Node carries our annotations and condition (Kubernetes mode).
	annotated, conditioned bool
	egress                 *egress // the egress NAT (egress.go)
	// selfLocation carries this Node's location when its label or
	// annotation changes (Kubernetes mode): peers read it from the Node at
	// once, so this end must too, or the two would disagree on the path.
	selfLocation chan string
	locMu        sync.Mutex // a.self.Location: the loop writes, the HTTP server reads
	pmtu         *mesh.PathMTUs
	mtu          int // the tunnel link's
	bounds       peer.Bounds
	// Peer objects (Kubernetes mode): the source, a coalesced "changed",
	// the ones accepted by the last reconcile (read by the HTTP server),
	// and the refusals already reported.
	ext         *kube.Peers
	extChanged  chan struct{}
	extMu       sync.Mutex
	extAccepted []peer.External
	extRefused  map[string]string
	// Keys: the pairs' preshared keys, and the requests to rotate the
	// node's own key (the loop serves them).
	pq        *keys.Manager
	rotateReq chan chan error
	keyWrites chan keyWrite       // the key manager's writes, done by the loop
	tables    knftables.Interface // weft's nftables table: the base chains, egress NAT
	// announceSelf fires when the loop is to gossip a rotated key
	// (announceAfterNode after the Node has it); nil otherwise.
	announceSelf <-chan time.Time
	memo         passMemo // what the last pass planned (pass.go; the loop's)
	rotateMu     sync.Mutex
	rotateLast   time.Time // the last rotation asked for on the control socket
	// noDirect: peers whose direct routes failed, in the tunnel until
	// then (the loop's own).
	noDirect fallbacks

	http *httpapi.API // the HTTP API: the loop clears its status reading after each change

	// Handover to a successor (handover.go): serveHandover passes a taken
	// request to the loop, which releases the device, answers released
	// and stops; Run then lets go of the rest.
	handoverReq chan *handover.Request
	renew       chan struct{} // a successor gave up after shaking hands: renew the sessions
	handoff     *handover.Request
	handoffAt   time.Time // when the loop stopped for it
}

// plane is the data plane as the loop writes and reads it: a *mesh.Mesh,
// or a fake in the loop's unit tests.
type plane interface {
	Apply(mesh.State) (mesh.Changes, error)
	WritePeerKey(pub wgtypes.Key, want *mesh.Peer, fresh bool) (bool, error)
	Peers() ([]wgtypes.Peer, error)
	Resting(pub wgtypes.Key) bool                     // off the device while idle (on-demand peers)
	RestingPeer(pub wgtypes.Key) (wgtypes.Peer, bool) // one resting, as the device would show it
	Idle(pub wgtypes.Key) bool                        // on the device, carried nothing lately (on-demand peers)
}

// Run starts the agent and blocks until ctx is done or the device stops. A
// value on resync (SIGHUP in weft-agent) forces a reconcile now.
// Everything that can fail on bad input or a busy port fails before the
// tunnel is touched, and a failure undoes what was started.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, resync <-chan struct{}) (err error) {
	a := &Agent{cfg: cfg, log: log, selfLocation: make(chan string, 1), pmtu: mesh.NewPathMTUs(),
		extChanged: make(chan struct{}, 1), extRefused: map[string]string{}, rotateReq: make(chan chan error), keyWrites: make(chan keyWrite),
		handoverReq: make(chan *handover.Request), renew: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(ctx) // every goroutine Run starts ends with it
	defer cancel()
	defer func() { _ = a.markReady(false) }()
	// An agent already running here hands its data plane over: its
	// listening sockets and the TUN come now, the rest once it lets go
	// (take, below), after everything that may fail has been checked.
	pred, err := a.findPredecessor(ctx)
	if err != nil {
		return err
	}
	if pred != nil {
		defer pred.Close()
		log.Info("an agent runs here: taking its data plane over", "version", pred.Version)
	} else if err := mesh.CheckPortFree(cfg.ListenPort); err != nil {
		// Ports first: a busy port must fail before anything is written or created.
		return err
	}
	ln, err := listenOr(pred, fileHTTP, cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http address %s: %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()
	var pprofLn net.Listener
	if cfg.PprofAddr != "" {
		if pprofLn, err = listenOr(pred, filePprof, cfg.PprofAddr); err != nil {
			return fmt.Errorf("pprof address %s: %w", cfg.PprofAddr, err)
		}
		defer pprofLn.Close()
	}
	var pqLn net.Listener
	if cfg.PQ != keys.Off {
		// On every address: a node's peers call the address they know
		// it by (its endpoint), which may be either family.
		if pqLn, err = listenOr(pred, filePQ, fmt.Sprintf(":%d", cfg.PQPort)); err != nil {
			return fmt.Errorf("key exchange port %d/tcp: %w", cfg.PQPort, err)
		}
		defer pqLn.Close()
	}
	controlLn, err := unixListenerOr(pred, fileControl)
	if err != nil {
		return err
	}
	cniLn, err := unixListenerOr(pred, fileCNI)
	if err != nil {
		return err
	}
	if cfg.KubeMode {
		if a.clients, err = kubeclient.NewClients(cfg.Kubeconfig); err != nil {
			return err
		}
		// Every watch is in the agent's one kubeclient.Informers: stopped when Run
		// returns, however it returns (Shutdown waits for the informers,
		// which end with their context).
		var stopInformers context.CancelFunc
		ctx, stopInformers = context.WithCancel(ctx)
		defer func() { stopInformers(); a.clients.Informers.Shutdown() }()
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
	underlay, err := mesh.UnderlayOf(adv)
	if err != nil {
		return fmt.Errorf("advertise address %s: %w", adv, err)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = underlay.MTU - mesh.Overhead
		if mtu < 1280 && slices.ContainsFunc(a.cfg.PodCIDRs, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
			// IPv6 needs 1280 on the link; the tunnel's outer packets
			// are then fragmented on the underlay (mesh's bind).
			log.Warn("the underlay MTU leaves less than 1280 for the tunnel; using 1280 for IPv6, outer packets will be fragmented", "underlay_mtu", underlay.MTU)
			mtu = 1280
		}
	}
	a.mtu = mtu
	bounds := peer.Bounds{ClusterCIDRs: cfg.ClusterCIDRs, Underlay: underlay.Prefixes, ExternalCIDRs: cfg.ExternalCIDRs}
	a.bounds = bounds
	if _, err := bounds.CheckPodCIDRs(a.cfg.PodCIDRs); err != nil {
		return fmt.Errorf("this node's own %v", err)
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
	a.self = peer.NodeInfo{
		Name:       cfg.NodeName,
		PublicKey:  key.PublicKey(),
		Endpoint:   netip.AddrPortFrom(adv, uint16(cfg.ListenPort)),
		GossipAddr: netip.AddrPortFrom(adv, uint16(cfg.GossipPort)),
		PodCIDRs:   a.cfg.PodCIDRs,
		Location:   a.cfg.Location,
		Direct:     a.cfg.IntraDirect,
		NodeAddrs:  a.cfg.OtherAddresses,
		BehindNAT:  a.cfg.BehindNAT,
	}
	// Metrics exist before any source can report a rejection; the series
	// read from gossip and the device are registered once those exist.
	a.metrics = newMetrics()
	a.http = httpapi.New(view{a}, a.metrics.reg, filepath.Join(cfg.StateDir, api.ControlSocket))
	a.reg = peer.NewRegistry(a.self, cfg.KubeMode, bounds, a.rejected)

	cached, err := loadCache(cfg.StateDir)
	if err != nil {
		log.Warn("ignoring peer cache", "err", err)
	}
	for _, n := range cached {
		a.reg.Set(peer.SourceCache, n)
	}
	a.saved = cached

	// The host's settings and weft's base nftables chains need no
	// device: written before it opens, so a successor's first moments
	// after take are the data plane's alone.
	if err := mesh.EnableForwarding(a.cfg.PodCIDRs); err != nil {
		return err
	}
	if err := mesh.LooseReversePath(); err != nil {
		a.log.Warn("pods cannot reach other nodes' host-network endpoints (the API server among them)", "err", err)
	}
	if a.tables, err = nft.Open(); err != nil {
		return err
	}
	a.egress = newEgress(a.tables, a.log)
	if err := a.ensureBaseRules(ctx); err != nil {
		return err
	}
	if a.cniConf, err = plan.ConfList(a.cfg.ConfInput(mtu)); err != nil {
		return err
	}
	startGossip := func() (err error) {
		a.gossip, err = gossip.Start(gossip.Config{
			Name: cfg.NodeName, Bind: adv, Port: cfg.GossipPort, SecretKey: gossipKey, Seeds: a.seeds,
			CountLog: a.metrics.gossipLog, CountRefused: a.metrics.gossipRefused,
			Profile: map[bool]string{false: gossip.Standalone, true: gossip.Kubernetes}[cfg.KubeMode],
		}, a.self, a.reg, log)
		return err
	}
	openDevice := func(tun, relay *os.File, peers string) (err error) {
		a.dev, err = mesh.OpenDevice(mesh.DeviceConfig{
			Name: cfg.Interface, MTU: mtu, RunDir: cfg.RunDir, PrivateKey: key,
			ListenPort: cfg.ListenPort, Logger: log, Verbose: cfg.LogLevel == "debug", TooBig: a.pmtu.TooBig, OnDemand: cfg.OnDemandAfter > 0,
			TUN: tun, Relay: relay, Peers: peers,
		})
		return err
	}
	leave := true // a graceful stop leaves gossip: peers drop the node at once
	gossipStopped := false
	defer func() {
		if a.gossip != nil && !gossipStopped {
			a.gossip.Stop(leave)
		}
	}()
	defer func() {
		if a.dev != nil {
			a.dev.Close()
		}
	}()
	// Handed over (the loop released the device and answered the
	// successor): what was started after this point has stopped (deferred
	// calls run last first); gossip lets go without leaving, the
	// goroutines end, and this process's copies of the shared sockets
	// close, so that only the successor serves them.
	defer func() {
		if a.handoff == nil {
			return
		}
		if a.gossip != nil {
			a.gossip.Stop(false)
			gossipStopped = true
		}
		cancel()
		for _, l := range []net.Listener{ln, pprofLn, pqLn, controlLn, cniLn} {
			if l != nil {
				l.Close()
			}
		}
		a.log.Info("let go of gossip and the shared sockets", "since_take", time.Since(a.handoffAt).Round(time.Microsecond))
	}()
	var left handoverState // what an old agent left
	if pred != nil {
		// The data plane first: its sessions are made through the old
		// agent before it lets go, and every step from take to the
		// device reading the TUN is traffic's pause.
		if left, err = a.succeed(pred, openDevice); err != nil {
			return err
		}
		// The old agent lets go of gossip after the data plane: its
		// port may still be taken for a moment.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if err = startGossip(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			return err
		}
	} else {
		if err := startGossip(); err != nil {
			return err
		}
		if err := openDevice(nil, nil, ""); err != nil {
			leave = false
			return err
		}
	}
	a.stopped = a.dev.Done()
	m, err := mesh.New(a.dev)
	if err != nil {
		return err
	}
	m.EnableOnDemand(a.onDemand(cached), key)
	watchCtx, stopWatch := context.WithCancel(ctx) // as long as Run, a handover's too
	defer stopWatch()
	if a.routeDrift, err = m.WatchRoutes(watchCtx); err != nil {
		return fmt.Errorf("follow route changes: %w", err)
	}
	a.mesh = m
	a.meshUp.Store(m)
	defer m.Close()
	a.metrics.watchDevice(a.gossip, m)
	kc := keys.Config{Mode: cfg.PQ, Rotation: cfg.PSKRotation, Port: cfg.PQPort, Key: key, Store: filepath.Join(cfg.StateDir, keys.StoreFile),
		Device: m, Write: a.requestKeyWrite(ctx), Metrics: a.metrics.reg, Log: log, Alive: a.gossip.Alive}
	if a.kube != nil {
		kc.Event = a.kube.Event
	}
	if a.pq, err = keys.New(kc); err != nil {
		return err
	}
	m.OnWake(a.pq.Woke)
	a.gossip.OnJoin(a.pq.Joined)
	if left.Keys == nil {
		a.pq.RestoreKept() // not handed over: the keys the last run kept (a crash)
	}
	a.pq.Restore(left.Keys, left.NodeKeySince)
	m.Restore(left.Rest)
	a.pmtu.Restore(left.PathMTUs)
	a.metrics.reg.MustRegister(a.http.Collector()) // reads the device and the keys
	if a.kube != nil {
		if err := a.kube.Start(ctx, a.reg); err != nil {
			return err
		}
		defer a.kube.Stop()
		if a.ext, err = kube.StartPeers(ctx, a.clients, log, a.externalsChanged, a.rejected); err != nil {
			return err
		}
	}
	if cfg.EnforcesPolicy() {
		var own []netip.Addr
		for _, p := range a.cfg.PodCIDRs { // a.cfg: in Kubernetes mode the Node's (learnSelf)
			own = append(own, api.FirstAddress(p))
		}
		a.netpol, err = netpol.New(netpol.Config{Kube: a.clients,
			Node: a.cfg.NodeName, StateDir: a.cfg.StateDir, Local: a.cfg.PodCIDRs, Own: own,
			Syncs: a.metrics.policySyncs, IsolatedPods: a.metrics.policyPods, Log: log})
		if err != nil {
			return err
		}
		if cniLn == nil {
			if cniLn, err = httpserve.ListenRootOnly(filepath.Join(cfg.StateDir, api.AgentSocket)); err != nil {
				return fmt.Errorf("agent socket: %w", err)
			}
			defer a.removeUnlessHandedOver(cniLn)
		}
		defer a.netpol.ServeSocket(cniLn)()
		if err := a.netpol.Start(ctx); err != nil {
			return err
		}
	}
	if !cfg.EnforcesPolicy() && cniLn != nil {
		cniLn.Close() // handed over by an agent that enforced NetworkPolicy; nobody serves it here
		os.Remove(filepath.Join(cfg.StateDir, api.AgentSocket))
		cniLn = nil
	}

	if pqLn != nil {
		go a.pq.Serve(pqLn)
		// Run returns once the key manager has written the keys of its
		// last seconds (a restart shakes hands under them).
		pqCtx, pqStop := context.WithCancel(ctx)
		pqDone := make(chan struct{})
		go func() {
			defer close(pqDone)
			a.pq.Loop(pqCtx)
		}()
		defer func() {
			pqStop()
			<-pqDone
		}()
	}

	if controlLn == nil {
		if controlLn, err = httpserve.ListenRootOnly(filepath.Join(cfg.StateDir, api.ControlSocket)); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		defer a.removeUnlessHandedOver(controlLn)
	}
	defer a.serveControl(controlLn)()

	srv := httpserve.NewServer(a.http.Handler())
	go httpserve.Serve(srv, connlimit.Listen(ln, connlimit.New(httpserve.MaxConnsPerSource, 0), func(string) { a.metrics.httpRefused.Inc() }), log, "http")
	defer srv.Close()
	if pprofLn != nil {
		psrv := httpserve.NewServer(httpapi.Pprof())
		psrv.WriteTimeout = 0 // a profile takes as long as it was asked to
		go httpserve.Serve(psrv, pprofLn, log, "pprof")
		defer psrv.Close()
	}
	if len(cfg.ClusterCIDRs) == 0 { // said once start-up can no longer fail, so a start-up error stays one line
		log.Warn("--cluster-cidr is not set: peers' pod CIDRs are not checked against the cluster's pod range (any range not overlapping another node's and not covering the underlay is accepted)")
	}
	log.Info("agent started", "version", version(), "node", cfg.NodeName, "public_key", a.self.PublicKey.String(),
		"endpoint", a.self.Endpoint.String(), "pod_cidrs", fmt.Sprint(a.cfg.PodCIDRs), "mtu", mtu, "kubernetes", cfg.KubeMode,
		"location", a.self.Location, "intra_location", peer.IntraLocation(a.self.Direct), "strict_encryption", cfg.StrictEncryption)
	hl, err := handover.Listen(cfg.StateDir)
	if err != nil {
		return err
	}
	defer hl.Close()
	go a.serveHandover(ctx, hl, []offered{{fileHTTP, ln}, {filePprof, pprofLn}, {filePQ, pqLn}, {fileControl, controlLn}, {fileCNI, cniLn}})
	return a.loop(ctx, resync)
}

// removeUnlessHandedOver removes a Unix socket's file when the agent stops,
// unless a successor serves it now.
func (a *Agent) removeUnlessHandedOver(ln net.Listener) {
	if a.handoff == nil {
		os.Remove(ln.Addr().String())
	}
}
