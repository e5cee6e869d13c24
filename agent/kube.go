package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

// Annotations weft publishes on its own Node and reads from every other.
const (
	AnnotationPublicKey     = "weft.dev/public-key"
	AnnotationEndpoint      = "weft.dev/endpoint"
	AnnotationGossipAddress = "weft.dev/gossip-address"
	maxAnnotationSize       = 256
)

// ConditionReason is the reason of the NetworkUnavailable=False condition weft sets.
const ConditionReason = "WeftIsUp"

// kubeClient builds a client from a kubeconfig file or, without one, from the
// in-cluster service account.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cfg.UserAgent = "weft-agent"
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// selfFromNode reads this node's pod CIDRs and InternalIP from its Node.
func selfFromNode(n *corev1.Node) ([]netip.Prefix, netip.Addr, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var ps []netip.Prefix
	if len(cidrs) > 0 {
		var err error
		if ps, err = ParsePodCIDRs(cidrs); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("node %s spec.podCIDRs: %v", n.Name, err)
		}
	}
	var ip netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if p, err := netip.ParseAddr(a.Address); err == nil && !ip.IsValid() {
				ip = p.Unmap()
			}
		}
	}
	return ps, ip, nil
}

// NodeInfoFromNode validates another Node's weft annotations and pod CIDRs.
// ok is false when the Node carries no weft annotations yet (its agent has
// not started): that is not an error. Everything here is untrusted: a
// tenant who may edit annotations must not be able to take another node's
// range (the registry checks overlaps) or point a node's traffic at an
// address that is not the node's own.
func NodeInfoFromNode(n *corev1.Node) (info NodeInfo, ok bool, err error) {
	key, hasKey := n.Annotations[AnnotationPublicKey]
	ep, hasEP := n.Annotations[AnnotationEndpoint]
	ga := n.Annotations[AnnotationGossipAddress]
	if !hasKey && !hasEP {
		return NodeInfo{}, false, nil
	}
	for _, v := range []string{key, ep, ga} {
		if len(v) > maxAnnotationSize {
			return NodeInfo{}, true, fmt.Errorf("a weft.dev annotation is %d bytes, over %d", len(v), maxAnnotationSize)
		}
	}
	info = NodeInfo{Name: n.Name}
	if info.PublicKey, err = ParsePublicKey(key); err != nil {
		return NodeInfo{}, true, fmt.Errorf("%s: %v", AnnotationPublicKey, err)
	}
	if info.Endpoint, err = ParseEndpoint(ep); err != nil {
		return NodeInfo{}, true, fmt.Errorf("%s: %v", AnnotationEndpoint, err)
	}
	if ga != "" {
		if info.GossipAddr, err = ParseEndpoint(ga); err != nil {
			return NodeInfo{}, true, fmt.Errorf("%s: %v", AnnotationGossipAddress, err)
		}
	}
	addrs := map[netip.Addr]bool{}
	for _, a := range n.Status.Addresses {
		if p, err := netip.ParseAddr(a.Address); err == nil {
			addrs[p.Unmap()] = true
		}
	}
	if !addrs[info.Endpoint.Addr()] {
		return NodeInfo{}, true, fmt.Errorf("%s %s is not one of the Node's addresses", AnnotationEndpoint, info.Endpoint)
	}
	if info.GossipAddr.IsValid() && !addrs[info.GossipAddr.Addr()] {
		return NodeInfo{}, true, fmt.Errorf("%s %s is not one of the Node's addresses", AnnotationGossipAddress, info.GossipAddr)
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if info.PodCIDRs, err = parseClaimedCIDRs(cidrs); err != nil {
		return NodeInfo{}, true, fmt.Errorf("spec.podCIDRs: %v", err)
	}
	return info, true, nil
}

// Kube is the Kubernetes source: it watches Nodes into the registry,
// publishes this node's annotations and condition, and records Events.
type Kube struct {
	client   kubernetes.Interface
	name     string
	reg      *Registry
	log      *slog.Logger
	recorder record.EventRecorder
	events   record.EventBroadcaster
	factory  informers.SharedInformerFactory
	nodes    listersv1.NodeLister
	synced   cache.InformerSynced
	up       atomic.Bool
}

func newKube(client kubernetes.Interface, name string, log *slog.Logger) *Kube {
	k := &Kube{client: client, name: name, log: log}
	k.events = record.NewBroadcaster()
	k.recorder = k.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "weft-agent", Host: name})
	return k
}

// fetchSelf reads this node's Node object.
func (k *Kube) fetchSelf(ctx context.Context) (*corev1.Node, error) {
	return k.client.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
}

// Start watches Nodes into reg and probes the API server, telling reg
// whether it answers. It returns at once.
func (k *Kube) Start(ctx context.Context, reg *Registry) error {
	k.reg = reg
	k.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.client.CoreV1().Events("")})
	k.factory = informers.NewSharedInformerFactory(k.client, 10*time.Minute)
	inf := k.factory.Core().V1().Nodes()
	k.nodes = inf.Lister()
	k.synced = inf.Informer().HasSynced
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.onNode(obj) },
		UpdateFunc: func(_, obj any) { k.onNode(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok && n.Name != k.name {
				k.log.Info("node deleted", "node", n.Name)
				k.reg.Delete(SourceKubernetes, n.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	k.factory.Start(ctx.Done())
	go k.probe(ctx)
	return nil
}

func (k *Kube) onNode(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || n.Name == k.name {
		return
	}
	info, has, err := NodeInfoFromNode(n)
	switch {
	case err != nil:
		k.reg.Reject(SourceKubernetes, n.Name, err.Error())
	case !has:
		k.reg.Delete(SourceKubernetes, n.Name)
	default:
		k.reg.Set(SourceKubernetes, info)
	}
}

// probe asks the API server's /readyz every 2 s: the mesh runs on from its
// last known state while the API is away, and gossip-only nodes are taken
// provisionally only then.
func (k *Kube) probe(ctx context.Context) {
	cache.WaitForCacheSync(ctx.Done(), k.synced)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	first := true
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := k.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(pctx).Error()
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Publish writes this node's annotations with one patch.
func (k *Kube) Publish(ctx context.Context, self NodeInfo) error {
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationPublicKey:     self.PublicKey.String(),
		AnnotationEndpoint:      self.Endpoint.String(),
		AnnotationGossipAddress: self.GossipAddr.String(),
	}}}
	b, _ := json.Marshal(patch)
	_, err := k.client.CoreV1().Nodes().Patch(ctx, k.name, types.MergePatchType, b, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("annotate node %s: %w", k.name, err)
	}
	return nil
}

// SetNetworkAvailable sets NetworkUnavailable=False (reason WeftIsUp) on this Node.
func (k *Kube) SetNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	patch := map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": corev1.NodeNetworkUnavailable, "status": corev1.ConditionFalse, "reason": ConditionReason,
		"message": "weft mesh is up", "lastTransitionTime": now, "lastHeartbeatTime": now,
	}}}}
	b, _ := json.Marshal(patch)
	_, err := k.client.CoreV1().Nodes().PatchStatus(ctx, k.name, b)
	if err != nil {
		return fmt.Errorf("set NetworkUnavailable=False on %s: %w", k.name, err)
	}
	return nil
}

// Event records a warning on the Node named name, if there is one.
func (k *Kube) Event(name, reason, msg string) {
	if k.nodes == nil {
		return
	}
	n, err := k.nodes.Get(name)
	if err != nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID, APIVersion: "v1"}
	k.recorder.Event(ref, corev1.EventTypeWarning, reason, msg)
}

// Stop flushes Events and stops the informers.
func (k *Kube) Stop() {
	k.events.Shutdown()
	if k.factory != nil {
		k.factory.Shutdown()
	}
}

var errNoPodCIDRs = errors.New("no pod CIDRs: the Node has no spec.podCIDRs and --pod-cidr is not given")
