package plan

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weftnet/weft/policy"
)

// PolicySnapshot is what the NetworkPolicy controller read of the cluster
// at one moment: the node's ranges, what weft-cni attached here, and the
// informers' Pods, Namespaces and NetworkPolicies.
type PolicySnapshot struct {
	Node        string
	Local       []netip.Prefix // this node's pod ranges
	Own         []netip.Addr   // the node's own addresses in them
	Attachments []Attached
	Pods        []*corev1.Pod
	Namespaces  map[string]map[string]string // name -> labels
	Policies    []networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies (none when the API
	// server does not serve them), Nodes what their nodes peers select from.
	ClusterPolicies []cnp.ClusterNetworkPolicy
	Nodes           []policy.Node
}

// Attached is one attachment weft-cni reported: a pod's addresses on this node.
type Attached struct {
	Namespace, Name string // empty outside Kubernetes
	IPs             []netip.Addr
}

// PodKey names a pod as namespace/name.
func PodKey(namespace, name string) string { return namespace + "/" + name }

// PolicyPlan is the NetworkPolicy desired state of one node.
type PolicyPlan struct {
	Desired policy.Desired
	// LocalPods counts the pods of this node that were compiled.
	LocalPods int
	// Gone are the pods (PodKey) attached here that the API no longer has,
	// or that have finished: isolated both ways in Desired, and for the
	// controller to forget, so their addresses count as not programmed from
	// the next sync on. This also bounds the attachments a node keeps when
	// DELs go missing.
	Gone []string
	Errs []error // policies that could not be compiled (ignored)
}

// Policy compiles the policy of the pods attached here. A pod's addresses
// are those weft-cni reported; a pod attached before the agent restarted
// without a saved attachment is known from status.podIPs, and then only an
// address of this node for a pod of this node (and vice versa), and only
// where no newer attachment holds the address.
func Policy(s PolicySnapshot) PolicyPlan {
	c := policy.Cluster{Namespaces: s.Namespaces, Policies: s.Policies, ClusterPolicies: s.ClusterPolicies, Nodes: s.Nodes}
	isLocalAddr := func(ip netip.Addr) bool {
		return slices.ContainsFunc(s.Local, func(p netip.Prefix) bool { return p.Contains(ip) })
	}
	// Addresses attached here, by pod; an address belongs to its latest
	// attachment only (weft-cni's IPAM never hands out one address twice).
	byPod := map[string][]netip.Addr{}
	attached := map[netip.Addr]string{}
	d := policy.Desired{LocalCIDRs: s.Local, Known: slices.Clone(s.Own)}
	for _, a := range s.Attachments {
		key := PodKey(a.Namespace, a.Name)
		for _, ip := range a.IPs {
			attached[ip] = key
			d.Known = append(d.Known, ip)
		}
		if a.Name != "" {
			byPod[key] = append(byPod[key], a.IPs...)
		}
	}
	var local []policy.Pod
	found := map[string]bool{}
	for _, p := range s.Pods {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		key := PodKey(p.Namespace, p.Name)
		ips := byPod[key]
		isLocal := p.Spec.NodeName == s.Node
		if len(ips) == 0 {
			for _, st := range p.Status.PodIPs {
				ip, err := netip.ParseAddr(st.IP)
				if err != nil {
					continue
				}
				ip = ip.Unmap()
				if owner, ok := attached[ip]; ok && owner != key {
					continue // a stale status: the address belongs to a newer pod here
				}
				if isLocalAddr(ip) != isLocal {
					continue // only a pod on this node can hold an address of this node, and vice versa
				}
				ips = append(ips, ip)
			}
		}
		if len(ips) == 0 {
			continue
		}
		pp := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IPs: ips}
		for _, ctr := range p.Spec.Containers {
			pp.Ports = append(pp.Ports, ctr.Ports...)
		}
		c.Pods = append(c.Pods, pp)
		if isLocal {
			found[key] = true
			local = append(local, pp)
			d.Known = append(d.Known, ips...)
		}
	}
	out := PolicyPlan{LocalPods: len(local)}
	d.Pods, out.Errs = policy.Compile(c, local)
	for _, key := range slices.Sorted(maps.Keys(byPod)) {
		if !found[key] {
			out.Gone = append(out.Gone, key)
			d.Pods = append(d.Pods, policy.PodPolicy{IPs: byPod[key], IngressIsolated: true, EgressIsolated: true})
		}
	}
	out.Desired = d
	return out
}
