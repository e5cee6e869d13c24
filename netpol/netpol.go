// Package netpol is a node's NetworkPolicy controller: it watches Pods,
// Namespaces and NetworkPolicies, takes weft-cni's attachment reports on
// the agent socket, and programs the policy of this node's pods
// (plan.Policy, nft.Enforcer); a pod's ADD returns once its rules are in.
package netpol

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	listersv1 "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/nft"
	"github.com/weftnet/weft/plan"
	"github.com/weftnet/weft/policy"
)

const (
	attachmentsFile   = "attachments.json"
	maxAttachments    = 4096
	maxAttachmentBody = 16 << 10
	podWait           = 3 * time.Second  // for a new pod to reach the informer
	programWait       = 10 * time.Second // for its policy to reach nftables
	extraTTL          = 30 * time.Second
)

// Controller is the NetworkPolicy controller of one node: it watches Pods,
// Namespaces and NetworkPolicies, compiles the policy of the pods attached
// on this node (policy.Compile) and programs it (nft.Enforcer).
//
// A pod's addresses come from weft-cni, which reports each ADD and waits
// until the pod's rules are in place; until then the data plane drops the
// address (fail closed). Pods attached before the agent (re)started are
// known from the saved attachments and from status.podIPs.
type Controller struct {
	kube     *kubeclient.Clients
	node     string
	stateDir string
	log      *slog.Logger
	enf      *nft.Enforcer
	syncs    *prometheus.CounterVec // by result
	isolated prometheus.Gauge
	local    []netip.Prefix
	own      []netip.Addr // the node's addresses in its pod ranges

	// ClusterNetworkPolicy: once its informer runs, cnps (under mu) lists
	// them.
	cnps     func() []cnp.ClusterNetworkPolicy
	nodes    cache.Store // of *kubeclient.Node
	pods     listersv1.PodLister
	nss      listersv1.NamespaceLister
	nps      networkinglisters.NetworkPolicyLister
	synced   []cache.InformerSynced
	kick     chan struct{}
	firstRun chan struct{} // closed after the first successful sync
	healthy  atomic.Bool

	mu      sync.Mutex
	atts    map[string]attachment // by containerID/ifName
	saveSeq uint64                // bumped (under mu) by every change to atts
	// saveMu orders the writes of the attachments file (each an fsync)
	// outside mu: a newer snapshot is never overwritten by an older one.
	saveMu   sync.Mutex
	savedSeq uint64
	extra    map[string]extraPod // pods read directly while the informer lags
	gen      uint64              // bumped by every change that must reach nftables
	applied  uint64              // last generation in nftables
	lastErr  error
	changed  *sync.Cond
}

type extraPod struct {
	pod  *corev1.Pod
	seen time.Time
}

// Config is what a Controller is built with.
type Config struct {
	// Kube: the agent's clients; the controller's watches join its
	// informers, and it reads a pod not yet in their cache. ClusterNetworkPolicy
	// is enforced when the API server serves it.
	Kube     *kubeclient.Clients
	Node     string         // this node's name
	StateDir string         // where the attachments are saved, and the agent socket
	Local    []netip.Prefix // this node's pod CIDRs
	Own      []netip.Addr   // the node's own addresses in them
	// Syncs counts syncs by result (changed, unchanged, error);
	// IsolatedPods is the number of local pods a policy isolates.
	Syncs        *prometheus.CounterVec
	IsolatedPods prometheus.Gauge
	Log          *slog.Logger
}

// New returns a controller with the attachments saved by the last run;
// nothing is watched or programmed until Start.
func New(c Config) (*Controller, error) {
	enf, err := nft.NewEnforcer(nil)
	if err != nil {
		return nil, err
	}
	n := &Controller{kube: c.Kube, node: c.Node, stateDir: c.StateDir, log: c.Log, enf: enf, syncs: c.Syncs, isolated: c.IsolatedPods,
		local: c.Local, own: c.Own, kick: make(chan struct{}, 1), firstRun: make(chan struct{}),
		atts: map[string]attachment{}, extra: map[string]extraPod{}}
	n.changed = sync.NewCond(&n.mu)
	n.loadAttachments()
	return n, nil
}

// slimPod keeps what policy needs of a Pod, so that watching every pod of
// a large cluster costs little memory.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
		ResourceVersion: p.ResourceVersion, Labels: p.Labels}}
	s.Spec.NodeName, s.Spec.HostNetwork = p.Spec.NodeName, p.Spec.HostNetwork
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		if len(c.Ports) > 0 {
			s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	s.Status.Phase, s.Status.PodIPs = p.Status.Phase, p.Status.PodIPs
	return s, nil
}

// Start starts the informers and the sync loop; FirstSync is closed once
// the data plane holds the policy of every known pod.
func (n *Controller) Start(ctx context.Context) error {
	f := n.kube.Informers
	pods := f.Pods()
	if err := pods.SetTransform(slimPod); err != nil {
		return err
	}
	nss, nps := f.Namespaces(), f.NetworkPolicies()
	n.pods, n.nss = listersv1.NewPodLister(pods.GetIndexer()), listersv1.NewNamespaceLister(nss.GetIndexer())
	n.nps = networkinglisters.NewNetworkPolicyLister(nps.GetIndexer())
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.Poke() },
		UpdateFunc: func(old, cur any) { n.Poke() },
		DeleteFunc: func(any) { n.Poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{pods, nss, nps} {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return err
		}
		n.synced = append(n.synced, reg.HasSynced)
	}
	// Nodes for the nodes peers: the agent's Node informer, shared.
	nodes := f.Nodes()
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: n.nodeChanged,
		AddFunc: func(obj any) { n.nodeChanged(nil, obj) }, DeleteFunc: func(obj any) { n.nodeChanged(nil, obj) }}); err != nil {
		return err
	}
	n.nodes = nodes.GetStore()
	if n.servesCNP(ctx) {
		synced, err := n.startCNP(ctx)
		if err != nil {
			return err
		}
		n.synced = append(n.synced, synced)
		n.log.Info("enforcing ClusterNetworkPolicy (" + kubeclient.CNPGroupVersion.String() + ")")
	} else {
		go n.watchCNPLater(ctx)
	}
	f.Start(ctx.Done())
	go n.loop(ctx)
	return nil
}

// FirstSync is closed after the first successful sync.
func (n *Controller) FirstSync() <-chan struct{} { return n.firstRun }

// Healthy reports whether the last sync reached nftables.
func (n *Controller) Healthy() bool { return n.healthy.Load() }

// Enforcer is the controller's nftables enforcer (for the integrity check).
func (n *Controller) Enforcer() *nft.Enforcer { return n.enf }

// Poke asks for a sync of whatever changed in the informers (or in nftables).
func (n *Controller) Poke() {
	n.mu.Lock()
	n.gen++
	n.mu.Unlock()
	n.kickNow()
}

func (n *Controller) loop(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), n.synced...) {
		return
	}
	n.log.Info("network policy informers synced")
	// Failed syncs back off from 1 s to 10 s (client-go's rate limiter);
	// a success resets it.
	backoff := workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 10*time.Second)
	retry := time.NewTimer(0)
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.lastErr = ctx.Err()
			n.changed.Broadcast()
			n.mu.Unlock()
			return
		case <-n.kick:
		case <-retry.C:
		}
		n.mu.Lock()
		gen := n.gen
		n.mu.Unlock()
		err := n.sync(ctx)
		n.mu.Lock()
		n.lastErr = err
		if err == nil && gen > n.applied {
			n.applied = gen
		}
		n.changed.Broadcast()
		n.mu.Unlock()
		if err != nil {
			n.healthy.Store(false)
			n.syncs.WithLabelValues("error").Inc()
			in := backoff.When("sync")
			n.log.Error("network policy sync failed; retrying", "err", err, "in", in)
			retry.Reset(in)
			continue
		}
		backoff.Forget("sync")
		if !n.healthy.Swap(true) {
			select {
			case <-n.firstRun:
			default:
				close(n.firstRun)
				n.log.Info("network policy programmed")
			}
		}
	}
}

// sync compiles and programs the desired state.
func (n *Controller) sync(ctx context.Context) error {
	start := time.Now()
	d, local, errs := n.desired()
	for _, err := range errs {
		n.log.Warn("network policy ignored", "err", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ops, err := n.enf.Apply(sctx, d)
	if err != nil {
		return err
	}
	isolated := 0
	for _, p := range d.Pods {
		if p.IngressIsolated || p.EgressIsolated {
			isolated++
		}
	}
	n.isolated.Set(float64(isolated))
	if ops == 0 {
		n.syncs.WithLabelValues("unchanged").Inc()
		return nil
	}
	n.syncs.WithLabelValues("changed").Inc()
	n.log.Debug("network policy synced", "local_pods", local, "isolated", isolated, "nft_operations", ops, "took", time.Since(start))
	return nil
}

// desired takes a snapshot of the informers and the attachments and hands
// it to plan.Policy; the attachments of pods that are gone are forgotten.
func (n *Controller) desired() (policy.Desired, int, []error) {
	snap := plan.PolicySnapshot{Node: n.node, Local: n.local, Own: n.own, Namespaces: map[string]map[string]string{}}
	n.mu.Lock()
	cnps := n.cnps
	n.mu.Unlock()
	if cnps != nil {
		snap.ClusterPolicies = cnps()
		if readsNodes(snap.ClusterPolicies) {
			snap.Nodes = n.nodePeers()
		}
	}
	if nss, err := n.nss.List(labels.Everything()); err == nil {
		for _, ns := range nss {
			snap.Namespaces[ns.Name] = ns.Labels
		}
	}
	if nps, err := n.nps.List(labels.Everything()); err == nil {
		for _, p := range nps {
			snap.Policies = append(snap.Policies, *p)
		}
	}
	// Attachments first, pods second: an attachment is recorded only once
	// its pod is in the informer (or in extra), so every pod of this
	// snapshot is in the list taken after it, unless it has been deleted.
	n.mu.Lock()
	for _, a := range n.atts {
		snap.Attachments = append(snap.Attachments, plan.Attached{Namespace: a.Namespace, Name: a.Name, IPs: a.ips})
	}
	var extra []*corev1.Pod
	for k, e := range n.extra {
		if _, err := n.pods.Pods(e.pod.Namespace).Get(e.pod.Name); err == nil || time.Since(e.seen) > extraTTL {
			delete(n.extra, k)
			continue
		}
		extra = append(extra, e.pod)
	}
	n.mu.Unlock()
	snap.Pods, _ = n.pods.List(labels.Everything())
	snap.Pods = append(snap.Pods, extra...)

	p := plan.Policy(snap)
	if len(p.Gone) > 0 {
		n.forget(p.Gone)
	}
	return p.Desired, p.LocalPods, p.Errs
}

// waitApplied waits until generation gen is in nftables.
func (n *Controller) waitApplied(ctx context.Context, gen uint64) error {
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.changed.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.applied < gen {
		if ctx.Err() != nil {
			if n.lastErr != nil {
				return n.lastErr
			}
			return ctx.Err()
		}
		n.changed.Wait()
	}
	return nil
}
