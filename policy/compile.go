package policy

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weftnet/weft/api"
)

// Pod is what the NetworkPolicy compiler needs to know about a pod.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	IPs       []netip.Addr
	Ports     []corev1.ContainerPort // for named ports
}

// Cluster is the compiler's input: every pod and namespace it can see and
// every policy.
type Cluster struct {
	Namespaces      map[string]map[string]string // name -> labels
	Pods            []Pod
	Policies        []networkingv1.NetworkPolicy
	ClusterPolicies []cnp.ClusterNetworkPolicy
	Nodes           []Node // for ClusterNetworkPolicy's nodes peers
}

// PortRange is a protocol and an inclusive range of destination ports.
type PortRange struct {
	Protocol corev1.Protocol
	From, To uint16
}

// Allow admits traffic from (ingress) or to (egress) Peers on Ports.
// AnyPeer admits every address; no Ports admits every port and protocol.
type Allow struct {
	// Key names the peer list: the same Key always holds the same Peers
	// (policy, direction, rule and, for egress named ports, the destination
	// pod), so the data plane can keep Peers in a set of that name and
	// change only its elements when pods come and go.
	Key     string
	AnyPeer bool
	Peers   []netip.Prefix
	Ports   []PortRange
}

// PodPolicy is the compiled NetworkPolicy of one pod: per direction, whether
// it is isolated, and if so the union of what is allowed.
type PodPolicy struct {
	Namespace, Name string
	IPs             []netip.Addr
	IngressIsolated bool
	EgressIsolated  bool
	Ingress, Egress []Allow
	Tiers           // ClusterNetworkPolicy's rules around NetworkPolicy
}

// Compile computes the policy of each pod in local under the cluster's
// NetworkPolicies (networking.k8s.io/v1): a pod is isolated for a direction
// once any policy of that type selects it, and then allowed exactly the
// union of those policies' rules; and the ClusterNetworkPolicy rules of
// the Admin and Baseline tiers around them (tiers.go). It is pure. Errors
// name policies whose selectors cannot be parsed; those policies select
// nothing (a ClusterNetworkPolicy rule fails closed instead).
func Compile(c Cluster, local []Pod) ([]PodPolicy, []error) {
	var errs []error
	type compiled struct {
		p   *networkingv1.NetworkPolicy
		sel labels.Selector
	}
	var pols []compiled
	for i := range c.Policies {
		p := &c.Policies[i]
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			errs = append(errs, fmt.Errorf("networkpolicy %s/%s: podSelector: %w", p.Namespace, p.Name, err))
			continue
		}
		pols = append(pols, compiled{p, sel})
	}
	cnps, cerrs := c.clusterPolicies()
	errs = append(errs, cerrs...)
	// Peers depend on the rule, not on the pod it protects: compute each
	// rule's once, however many local pods the policy selects.
	memo := map[string]ruleResult{}
	egressMemo := map[string][]Rule{}
	seenErr := map[string]bool{}
	ruleOnce := func(key string, f func() ([]Allow, error)) ([]Allow, error) {
		if r, ok := memo[key]; ok {
			return r.allows, r.err
		}
		as, err := f()
		memo[key] = ruleResult{as, err}
		return as, err
	}
	out := make([]PodPolicy, 0, len(local))
	for _, pod := range local {
		pp := PodPolicy{Namespace: pod.Namespace, Name: pod.Name, IPs: pod.IPs}
		pp.Tiers = c.tiers(cnps, pod, memo, egressMemo, &errs, seenErr)
		for _, cp := range pols {
			if cp.p.Namespace != pod.Namespace || !cp.sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			ingress, egress := policyTypes(cp.p)
			if ingress {
				pp.IngressIsolated = true
				for i, r := range cp.p.Spec.Ingress {
					key := fmt.Sprintf("%s/%s/ingress/%d", cp.p.Namespace, cp.p.Name, i)
					as, err := ruleOnce(key, func() ([]Allow, error) {
						a, err := c.peers(cp.p.Namespace, r.From)
						a.Key = key
						return []Allow{a}, err
					})
					if err != nil {
						if !seenErr[key] {
							seenErr[key] = true
							errs = append(errs, fmt.Errorf("networkpolicy %s/%s: %w", cp.p.Namespace, cp.p.Name, err))
						}
						continue
					}
					a := as[0]
					a.Ports = resolvePorts(r.Ports, pod.Ports)
					if len(r.Ports) > 0 && len(a.Ports) == 0 {
						continue // only named ports this pod does not have: no match
					}
					pp.Ingress = append(pp.Ingress, a)
				}
			}
			if egress {
				pp.EgressIsolated = true
				for i, r := range cp.p.Spec.Egress {
					key := fmt.Sprintf("%s/%s/egress/%d", cp.p.Namespace, cp.p.Name, i)
					allows, err := ruleOnce(key, func() ([]Allow, error) { return c.egressRule(key, cp.p.Namespace, r) })
					if err != nil {
						if !seenErr[key] {
							seenErr[key] = true
							errs = append(errs, fmt.Errorf("networkpolicy %s/%s: %w", cp.p.Namespace, cp.p.Name, err))
						}
						continue
					}
					pp.Egress = append(pp.Egress, allows...)
				}
			}
		}
		out = append(out, pp)
	}
	return out, errs
}

type ruleResult struct {
	allows []Allow
	err    error
}

// policyTypes applies the defaulting of spec.policyTypes: Ingress always,
// Egress when the policy has egress rules.
func policyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// egressRule compiles one egress rule. Named ports refer to the destination
// pod's ports, so a rule with named ports becomes one Allow per destination
// pod; ipBlock peers cannot have named ports and match only numeric ones.
func (c Cluster) egressRule(key, ns string, r networkingv1.NetworkPolicyEgressRule) ([]Allow, error) {
	all, err := c.peers(ns, r.To)
	if err != nil {
		return nil, err
	}
	all.Key = key
	if !hasNamedPort(r.Ports) {
		all.Ports = resolvePorts(r.Ports, nil)
		return []Allow{all}, nil
	}
	var out []Allow
	if numeric := resolvePorts(r.Ports, nil); len(numeric) > 0 {
		out = append(out, Allow{Key: key, AnyPeer: all.AnyPeer, Peers: all.Peers, Ports: numeric})
	}
	// The destinations a named port can resolve on: the selected pods, with
	// all their addresses; every pod when the rule names no peer; pods with
	// an address in an ipBlock, with those addresses.
	type dest struct {
		pod Pod
		ips []netip.Prefix
	}
	var dests []dest
	if len(r.To) == 0 {
		for _, p := range c.Pods {
			dests = append(dests, dest{p, hostPrefixes(p.IPs)})
		}
	} else {
		pods, err := c.selectedPods(ns, r.To)
		if err != nil {
			return nil, err
		}
		picked := map[string]bool{}
		for _, p := range pods {
			picked[p.Namespace+"/"+p.Name] = true
			dests = append(dests, dest{p, hostPrefixes(p.IPs)})
		}
		var blocks []netip.Prefix
		for _, peer := range r.To {
			if peer.IPBlock != nil {
				ps, err := ipBlock(peer.IPBlock)
				if err != nil {
					return nil, err
				}
				blocks = append(blocks, ps...)
			}
		}
		for _, p := range c.Pods {
			if picked[p.Namespace+"/"+p.Name] {
				continue
			}
			var in []netip.Prefix
			for _, ip := range hostPrefixes(p.IPs) {
				if slices.ContainsFunc(blocks, func(b netip.Prefix) bool { return b.Contains(ip.Addr()) }) {
					in = append(in, ip)
				}
			}
			if len(in) > 0 {
				dests = append(dests, dest{p, in})
			}
		}
	}
	// Destinations whose named ports resolve alike share one Allow, so a
	// rule costs one set per distinct port list, not one per pod.
	byPorts := map[string]int{}
	for _, d := range dests {
		ports := resolvePorts(r.Ports, d.pod.Ports)
		if len(ports) == 0 {
			continue
		}
		sig := fmt.Sprint(ports)
		i, ok := byPorts[sig]
		if !ok {
			i = len(out)
			byPorts[sig] = i
			out = append(out, Allow{Key: key + "/ports=" + sig, Ports: ports})
		}
		out[i].Peers = append(out[i].Peers, d.ips...)
	}
	for i := range out {
		if !out[i].AnyPeer {
			out[i].Peers = api.Disjoint(out[i].Peers)
		}
	}
	return out, nil
}

// peers compiles a rule's peer list into addresses. No peers means any.
func (c Cluster) peers(ns string, peers []networkingv1.NetworkPolicyPeer) (Allow, error) {
	if len(peers) == 0 {
		return Allow{AnyPeer: true}, nil
	}
	var a Allow
	for _, peer := range peers {
		if peer.IPBlock != nil {
			ps, err := ipBlock(peer.IPBlock)
			if err != nil {
				return Allow{}, err
			}
			a.Peers = append(a.Peers, ps...)
		}
	}
	pods, err := c.selectedPods(ns, peers)
	if err != nil {
		return Allow{}, err
	}
	for _, p := range pods {
		a.Peers = append(a.Peers, hostPrefixes(p.IPs)...)
	}
	a.Peers = api.Disjoint(a.Peers)
	return a, nil
}

// selectedPods returns the pods the selector peers (not ipBlocks) pick:
// podSelector alone within the policy's namespace, namespaceSelector alone
// for all pods of matching namespaces, both for matching pods in matching
// namespaces.
func (c Cluster) selectedPods(ns string, peers []networkingv1.NetworkPolicyPeer) ([]Pod, error) {
	var out []Pod
	seen := map[string]bool{}
	for _, peer := range peers {
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			continue
		}
		podSel, nsSel := labels.Everything(), labels.Nothing()
		var err error
		if peer.PodSelector != nil {
			if podSel, err = metav1.LabelSelectorAsSelector(peer.PodSelector); err != nil {
				return nil, fmt.Errorf("podSelector: %w", err)
			}
		}
		if peer.NamespaceSelector != nil {
			if nsSel, err = metav1.LabelSelectorAsSelector(peer.NamespaceSelector); err != nil {
				return nil, fmt.Errorf("namespaceSelector: %w", err)
			}
		}
		for _, p := range c.Pods {
			inNS := p.Namespace == ns
			if peer.NamespaceSelector != nil {
				inNS = nsSel.Matches(labels.Set(c.Namespaces[p.Namespace]))
			}
			key := p.Namespace + "/" + p.Name
			if inNS && podSel.Matches(labels.Set(p.Labels)) && !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}
