package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

func (a *Agent) loop(ctx context.Context, kick <-chan struct{}) error {
	// The egress sets' writer lives as long as the loop: after a handover
	// the successor writes the table.
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() { a.egress.run(wctx); close(writerDone) }()
	defer func() { stopWriter(); <-writerDone }()
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	integrity := time.NewTicker(integrityInterval)
	defer integrity.Stop()
	var rotateKey <-chan time.Time
	if a.cfg.KeyRotation > 0 {
		t := time.NewTicker(a.cfg.KeyRotation)
		defer t.Stop()
		rotateKey = t.C
	}
	var expireCache <-chan time.Time
	if !a.cfg.KubeMode {
		expireCache = time.After(cacheGrace)
	}
	retries := newRetrier()
	retry := time.NewTimer(0)
	retry.Stop()
	next := func(again bool, err error) {
		if d, ok := retries.after(again, err); ok {
			retry.Reset(d)
		}
	}
	// Pods may be attached (the CNI config written) only once their
	// NetworkPolicy can be programmed.
	var policySynced <-chan struct{}
	if a.netpol != nil {
		policySynced = a.netpol.FirstSync()
	}
	free := newReleaser(settleAfter, releaseEvery, freeHeap)
	defer free.stop()
	next(a.reconcile(ctx))
	free.passed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.stopped:
			return errors.New("wireguard device stopped (was the interface deleted?)")
		case <-expireCache:
			a.reg.DeleteAll(peer.SourceCache)
		case <-a.reg.Changed():
		case <-resync.C:
		case <-a.routeDrift:
		case <-integrity.C:
			if !a.reassertRules(ctx) {
				continue // intact: nothing for a reconcile to do
			}
		case <-kick:
		case <-retry.C:
		case <-policySynced:
			policySynced = nil
		case <-a.extChanged:
		case <-a.pmtu.Kick():
			if !a.learnPathMTUs() {
				continue
			}
		case <-rotateKey:
			if err := a.rotateKey(); err != nil {
				a.log.Error("scheduled key rotation failed", "err", err)
			}
		case done := <-a.rotateReq:
			done <- a.rotateKey()
		case <-a.renew:
			if err := a.dev.Renew(); err != nil {
				a.log.Error("cannot renew the sessions a successor left", "err", err)
			}
			continue
		case req := <-a.handoverReq:
			// A successor took over. The loop, the device's one writer,
			// records the device's last state, lets go of the TUN and the
			// socket at once and tells the successor, which binds the
			// port now; Run tears down the rest.
			// Everything but the release first: from the socket's close
			// to the successor's bind, what arrives is lost.
			a.handoff, a.handoffAt = req, time.Now()
			st := a.leaveState()
			a.dev.Release(req.Version >= 2)
			a.released(st)
			_ = a.markReady(false)
			return ErrHandedOver
		case <-a.announceSelf:
			a.announceSelf = nil
			if err := a.gossip.Announce(a.selfNow()); err != nil {
				a.log.Warn("cannot gossip the new key; the Node annotation carries it", "err", err)
			}
			continue
		case <-a.pq.Changed():
		case <-a.egress.failed:
		case <-a.saveDue:
			a.savePending()
			continue
		case w := <-a.keyWrites:
			wrote, err := a.writeKey(w.pub, w.fresh)
			w.done <- keyWritten{wrote, err}
			continue // only that peer changed
		case loc := <-a.selfLocation:
			a.log.Info("this node's location changed", "from", a.self.Location, "to", loc)
			a.locMu.Lock()
			a.self.Location = loc
			a.locMu.Unlock()
		}
		next(a.reconcile(ctx))
		free.passed()
	}
}

// retrier says when the loop's next pass is due after one that failed or
// left work pending: a failed pass is retried after 1 s, backing off to
// 5 s while it keeps failing (client-go's rate limiter); pending work (a
// passive peer's keepalive, an annotation not yet written) comes back
// after 1 s; after a clean pass nothing is due.
type retrier struct {
	backoff workqueue.TypedRateLimiter[string]
}

func newRetrier() retrier {
	return retrier{workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Second)}
}

// after reports when the next pass is due after one that reported again
// and err; ok is false when none is.
func (r retrier) after(again bool, err error) (d time.Duration, ok bool) {
	switch {
	case err != nil:
		return r.backoff.When("reconcile"), true
	case again:
		r.backoff.Forget("reconcile")
		return time.Second, true
	default:
		r.backoff.Forget("reconcile")
		return 0, false
	}
}

// reconcile applies the registry's view to the data plane and, once that
// works, publishes readiness. It reports the failure that stopped it (logged
// here), or whether another pass is due soon: while passive peers wait for
// their keepalive, or while the Node is not yet annotated.
func (a *Agent) reconcile(ctx context.Context) (again bool, err error) {
	start := time.Now()
	defer func() { a.metrics.passSeconds.Observe(time.Since(start).Seconds()) }()
	peers, changed := a.passPeers() // pass.go: what is unchanged is not planned again
	ext := a.passExternals(peers)
	if changed {
		a.pq.Update(peers)
	}
	ch, err := a.mesh.Apply(a.passState(peers, ext))
	var dpe *mesh.DirectPathError
	if errors.As(err, &dpe) {
		// The rest was applied; those peers go through the tunnel (now,
		// and until the fallback expires).
		a.directFailed(peers, dpe)
		ch2, err2 := a.mesh.Apply(a.passState(peers, ext))
		ch.RoutesAdded, ch.PeersWritten = ch.RoutesAdded+ch2.RoutesAdded, ch.PeersWritten+ch2.PeersWritten
		err = err2
	}
	if !ch.Empty() || err != nil {
		a.http.Invalidate()
	}
	if err != nil {
		a.metrics.reconciles.WithLabelValues("error").Inc()
		a.log.Error("reconcile failed; retrying", "err", err)
		return true, err
	}
	a.metrics.peers.Set(float64(len(peers)))
	a.metrics.dormant.Set(float64(ch.PeersDormant))
	if ch.Empty() {
		a.metrics.reconciles.WithLabelValues("unchanged").Inc()
	} else {
		a.metrics.reconciles.WithLabelValues("changed").Inc()
		a.log.Info("reconciled", "peers", len(peers), "peers_written", ch.PeersWritten, "peers_removed", ch.PeersRemoved, "peers_deferred", ch.PeersDeferred,
			"peers_asleep", ch.PeersAsleep, "peers_dormant", ch.PeersDormant,
			"routes_added", ch.RoutesAdded, "routes_removed", ch.RoutesRemoved,
			"addresses_added", ch.AddressesAdded, "addresses_removed", ch.AddressesRemoved)
	}
	if ch.PeersRemoved+ch.PeersAsleep >= 64 {
		// Many peers just left the device, each with its queues and
		// perhaps a staged 64 KiB buffer, now in wireguard-go's pools:
		// two collections empty sync.Pool, and the memory goes back to
		// the system now rather than over the next minutes.
		runtime.GC()
		debug.FreeOSMemory()
	}
	if err := a.applyMasquerade(ctx, peers, ext); err != nil {
		a.metrics.reconciles.WithLabelValues("error").Inc()
		a.log.Error("egress masquerade failed; retrying", "err", err)
		return true, err
	}
	a.keepCache(peers)
	if !a.ready.Load() {
		if a.netpol != nil && !a.netpol.Healthy() {
			a.log.Debug("waiting for network policy to be programmed before writing the CNI config")
			return false, nil
		}
		wrote, err := writeCNIConf(a.cfg.CNIConfDir, a.cniConf)
		if err != nil {
			a.log.Error("cannot write CNI config; retrying", "err", err)
			return true, err
		}
		if err := a.markReady(true); err != nil {
			a.log.Error("cannot write the ready file; retrying", "err", err)
			return true, err
		}
		a.log.Info("ready", "cni_conf", filepath.Join(a.cfg.CNIConfDir, api.ConfFile), "cni_conf_written", wrote)
	}
	return a.publish(ctx) || ch.PeersDeferred > 0, nil
}

// acceptedPeers are the nodes the registry accepts as peers now.
func (a *Agent) acceptedPeers() []peer.NodeInfo {
	return a.reg.PeerInfos()
}

// externalsChanged is the Peer objects' source telling the loop to look again.
func (a *Agent) externalsChanged() {
	select {
	case a.extChanged <- struct{}{}:
	default:
	}
}

// acceptExternals judges the Peer objects against this node, its peers and
// the cluster's ranges; each refusal is reported once until it changes.
func (a *Agent) acceptExternals(peers []peer.NodeInfo, listed []peer.External) []peer.External {
	a.extMu.Lock()
	var previous []string
	for _, e := range a.extAccepted {
		previous = append(previous, e.Name)
	}
	a.extMu.Unlock()
	ok, rej := peer.AcceptExternals(a.self, a.bounds, peers, listed, previous)
	now := map[string]string{}
	for _, r := range rej {
		r.Name = plan.ExternalName(r.Name)
		now[r.Name] = r.Detail
		if a.extRefused[r.Name] != r.Detail {
			a.rejected(r)
		}
	}
	a.extRefused = now
	a.extMu.Lock()
	a.extAccepted = ok
	a.extMu.Unlock()
	return ok
}

// learnPathMTUs reads the path MTU to every peer's current endpoint (the
// device's: it may have roamed) and reports whether a peer's tunnel MTU
// changed.
func (a *Agent) learnPathMTUs() bool {
	dev, err := a.mesh.Peers()
	if err != nil {
		a.log.Warn("cannot read the device for the path MTU to peers; trying again", "err", err)
		a.pmtu.Retry()
		return false
	}
	names := map[wgtypes.Key]string{}
	for _, c := range a.reg.Peers() {
		names[c.PublicKey] = c.Name
	}
	eps := map[string]netip.Addr{}
	for _, d := range dev {
		if n, ok := names[d.PublicKey]; ok && d.Endpoint != nil {
			ap := d.Endpoint.AddrPort()
			eps[n] = ap.Addr().Unmap()
		}
	}
	changed := a.pmtu.Learn(eps, a.mtu)
	if n := a.pmtu.Unread(); n > 0 {
		a.log.Debug("sends were over the path MTU, but the kernel has no path MTU for them yet; looking again", "endpoints", n)
	}
	if !changed {
		return false
	}
	a.log.Info("path MTU to peers", "tunnel_mtu_by_peer", fmt.Sprint(a.pmtu.Snapshot()))
	return true
}

func (a *Agent) pathMTUs() map[string]int { return a.pmtu.Snapshot() }

// live names the peers gossip holds alive (plan.Options.Live).
func (a *Agent) live(peers []peer.NodeInfo) map[string]bool {
	if a.gossip == nil {
		return nil
	}
	out := map[string]bool{}
	for _, n := range peers {
		if a.gossip.Alive(n.Name) {
			out[n.Name] = true
		}
	}
	return out
}

// applyMasquerade programs the egress NAT plan.EgressNAT wants (egress.go);
// it writes nothing when nothing changed.
func (a *Agent) applyMasquerade(ctx context.Context, peers []peer.NodeInfo, ext []peer.External) error {
	return a.egress.apply(ctx, a.passEgress(peers, ext))
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

func (a *Agent) rejected(r peer.Rejection) {
	a.metrics.rejections.WithLabelValues(string(r.Reason)).Inc()
	a.log.Warn("refused peer", "node", r.Name, "reason", string(r.Reason), "detail", r.Detail)
	if a.kube != nil {
		a.kube.Event(r.Name, "WeftPeerRefused", fmt.Sprintf("weft-agent on %s refused this node as a peer (%s): %s", a.cfg.NodeName, r.Reason, r.Detail))
	}
}
