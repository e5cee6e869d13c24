// Package kube is the Kubernetes source: it watches Nodes into the
// registry, publishes this node's annotations and condition, records
// Events, and watches Peer objects (peers.go). It only observes; the
// registry and peer.AcceptExternals decide.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/peer"
)

// Source is the Kubernetes source: it watches Nodes into the registry,
// publishes this node's annotations and condition, and records Events.
type Source struct {
	clients  *kubeclient.Clients
	name     string
	label    string       // --topology-label
	location func(string) // called with this Node's location when it changes
	intra    string       // --intra-location, published
	reg      *peer.Registry
	log      *slog.Logger
	recorder record.EventRecorder
	events   record.EventBroadcaster
	nodes    cache.Store // of *kubeclient.Node
	synced   cache.InformerSynced
	up       atomic.Bool
	probeNow chan struct{}
}

// New returns the source for the Node name on c; location is called with
// this Node's location (its topologyLabel) when it changes.
func New(c *kubeclient.Clients, name, topologyLabel, intra string, location func(string), log *slog.Logger) *Source {
	k := &Source{clients: c, name: name, label: topologyLabel, intra: intra, location: location, log: log, probeNow: make(chan struct{}, 1)}
	k.events = record.NewBroadcaster()
	k.recorder = k.events.NewRecorder(kubeclient.Scheme, corev1.EventSource{Component: "weft-agent", Host: name})
	return k
}

// FetchSelf reads this node's Node object.
func (k *Source) FetchSelf(ctx context.Context) (*corev1.Node, error) {
	return k.clients.GetNode(ctx, k.name)
}

// Start watches Nodes into reg and probes the API server, telling reg
// whether it answers. It returns at once.
func (k *Source) Start(ctx context.Context, reg *peer.Registry) error {
	k.reg = reg
	k.events.StartRecordingToSink(k.clients.Events())
	inf := k.clients.Informers.Nodes()
	k.nodes = inf.GetStore()
	k.synced = inf.HasSynced
	// A broken Node watch is the first sign of an outage: probe at once.
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		select {
		case k.probeNow <- struct{}{}:
		default:
		}
	}); err != nil {
		return err
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.onNode(obj) },
		UpdateFunc: func(_, obj any) { k.onNode(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*kubeclient.Node); ok && n.Name != k.name {
				k.log.Info("node deleted", "node", n.Name)
				k.reg.Delete(peer.SourceKubernetes, n.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	k.clients.Informers.Start(ctx.Done())
	go k.probe(ctx)
	return nil
}

func (k *Source) onNode(obj any) {
	s, ok := obj.(*kubeclient.Node)
	if !ok {
		return
	}
	n := s.Core()
	if n.Name == k.name {
		if loc, err := peer.LocationOf(n, k.label); err != nil {
			k.log.Warn("this Node's location is not valid; keeping the last one", "err", err)
		} else if k.location != nil {
			k.location(loc)
		}
		return
	}
	info, has, err := peer.NodeInfoFromNode(n, k.label)
	switch {
	case err != nil:
		k.reg.Reject(peer.SourceKubernetes, n.Name, err.Error())
	case !has:
		k.reg.Delete(peer.SourceKubernetes, n.Name)
	default:
		k.reg.Set(peer.SourceKubernetes, info)
	}
}

// Probe intervals: while the API server answers, a probe every 15 s (a
// kubelet's lease renewal is every 10 s), and at once when the Node watch
// breaks; while it does not, every 2 s.
const (
	probeUp   = 15 * time.Second
	probeDown = 2 * time.Second
)

// probe asks the API server's /readyz (see probeUp, probeDown): the mesh
// runs on from its last known state while the API is away, and
// gossip-only nodes are taken provisionally only then.
func (k *Source) probe(ctx context.Context) {
	cache.WaitForCacheSync(ctx.Done(), k.synced)
	t := time.NewTimer(0)
	defer t.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.probeNow:
			t.Stop()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := k.clients.Ready(pctx)
		cancel()
		up := err == nil && k.synced()
		if k.up.Swap(up) != up || first {
			first = false
			if up {
				k.log.Info("API server answers")
			} else {
				k.log.Warn("API server unreachable; the mesh keeps its last known state", "err", err)
			}
		}
		k.reg.SetAPIUp(up)
		if up {
			t.Reset(probeUp)
		} else {
			t.Reset(probeDown)
		}
	}
}

// Publish writes this node's annotations with one patch.
func (k *Source) Publish(ctx context.Context, self peer.NodeInfo) error {
	ann := map[string]string{
		api.AnnotationPublicKey:     self.PublicKey.String(),
		api.AnnotationEndpoint:      self.Endpoint.String(),
		api.AnnotationGossipAddress: self.GossipAddr.String(),
		api.AnnotationIntraLocation: k.intra,
	}
	if self.BehindNAT { // otherwise an operator's annotation on this Node stands
		ann[api.AnnotationBehindNAT] = "true"
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": ann}}
	b, _ := json.Marshal(patch)
	if err := k.clients.PatchNode(ctx, k.name, false, b); err != nil {
		return fmt.Errorf("annotate node %s: %w", k.name, err)
	}
	return nil
}

// SetNetworkAvailable sets NetworkUnavailable=False (reason WeftIsUp) on this Node.
func (k *Source) SetNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	patch := map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": corev1.NodeNetworkUnavailable, "status": corev1.ConditionFalse, "reason": api.ConditionReason,
		"message": "weft mesh is up", "lastTransitionTime": now, "lastHeartbeatTime": now,
	}}}}
	b, _ := json.Marshal(patch)
	if err := k.clients.PatchNode(ctx, k.name, true, b); err != nil {
		return fmt.Errorf("set NetworkUnavailable=False on %s: %w", k.name, err)
	}
	return nil
}

// Event records a warning on the Node named name, if there is one.
func (k *Source) Event(name, reason, msg string) {
	if k.nodes == nil {
		return
	}
	obj, ok, _ := k.nodes.GetByKey(name)
	n, isNode := obj.(*kubeclient.Node)
	if !ok || !isNode {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID, APIVersion: "v1"}
	k.recorder.Event(ref, corev1.EventTypeWarning, reason, msg)
}

// Stop flushes Events (the informers are their owner's to stop: kubeclient.Informers.Shutdown).
func (k *Source) Stop() {
	k.events.Shutdown()
}
