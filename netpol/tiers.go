package netpol

import (
	"context"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/policy"
)

// ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1) is watched when
// the API server serves it. Found at start, the first sync waits for its
// informer, so that no pod is ever programmed without the Admin tier's
// rules; not found, it is looked for every minute (the CRD installed
// later) and joins the syncs once its informer has synced.

const cnpRecheck = time.Minute

// servesCNP reports whether the API server serves ClusterNetworkPolicy.
func (n *Controller) servesCNP(ctx context.Context) bool {
	ok, _ := n.kube.Serves(ctx, kubeclient.CNPGroupVersion, "clusternetworkpolicies")
	return ok
}

// startCNP starts the ClusterNetworkPolicy informer and returns its
// HasSynced.
func (n *Controller) startCNP(ctx context.Context) (cache.InformerSynced, error) {
	inf := n.kube.Informers.ClusterNetworkPolicies()
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.Poke() },
		UpdateFunc: func(any, any) { n.Poke() },
		DeleteFunc: func(any) { n.Poke() },
	})
	if err != nil {
		return nil, err
	}
	store := inf.GetStore()
	n.kube.Informers.Start(ctx.Done())
	n.mu.Lock()
	n.cnps = func() []cnp.ClusterNetworkPolicy {
		if !reg.HasSynced() {
			return nil
		}
		list := store.List()
		out := make([]cnp.ClusterNetworkPolicy, 0, len(list))
		for _, o := range list {
			if p, ok := o.(*cnp.ClusterNetworkPolicy); ok {
				out = append(out, *p)
			}
		}
		return out
	}
	n.mu.Unlock()
	return reg.HasSynced, nil
}

// watchCNPLater looks for the API every minute and starts the informer
// once it is served.
func (n *Controller) watchCNPLater(ctx context.Context) {
	n.log.Info("the API server does not serve ClusterNetworkPolicy (" + kubeclient.CNPGroupVersion.String() + "); looking again every minute")
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(cnpRecheck):
		}
		if !n.servesCNP(ctx) {
			continue
		}
		synced, err := n.startCNP(ctx)
		if err != nil {
			n.log.Error("ClusterNetworkPolicy informer", "err", err)
			return
		}
		if cache.WaitForCacheSync(ctx.Done(), synced) {
			n.log.Info("ClusterNetworkPolicy is served now; enforcing it")
			n.Poke()
		}
		return
	}
}

// nodePeers is what ClusterNetworkPolicy's nodes peers select from: each
// Node's labels and status addresses.
func (n *Controller) nodePeers() []policy.Node {
	if n.nodes == nil {
		return nil
	}
	list := n.nodes.List()
	out := make([]policy.Node, 0, len(list))
	for _, obj := range list {
		node, ok := obj.(*kubeclient.Node)
		if !ok {
			continue
		}
		pn := policy.Node{Labels: node.Labels}
		for _, a := range node.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				pn.IPs = append(pn.IPs, ip.Unmap())
			}
		}
		out = append(out, pn)
	}
	return out
}

// readsNodes reports whether a policy has a nodes peer: only then does a
// sync read every Node (at thousands of nodes, not for nothing).
func readsNodes(cnps []cnp.ClusterNetworkPolicy) bool {
	for _, p := range cnps {
		for _, r := range p.Spec.Egress {
			if slices.ContainsFunc(r.To, func(q cnp.ClusterNetworkPolicyEgressPeer) bool { return q.Nodes != nil }) {
				return true
			}
		}
	}
	return false
}

// nodeChanged pokes a sync when what a nodes peer reads of a Node changed
// (not on every status heartbeat), and only while a ClusterNetworkPolicy
// could read it.
func (n *Controller) nodeChanged(old, cur any) {
	o, ok1 := old.(*kubeclient.Node)
	c, ok2 := cur.(*kubeclient.Node)
	if ok1 && ok2 && labels.Equals(o.Labels, c.Labels) && slices.Equal(o.Addresses, c.Addresses) {
		return
	}
	n.mu.Lock()
	watching := n.cnps != nil
	n.mu.Unlock()
	if watching {
		n.Poke()
	}
}
