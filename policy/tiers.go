package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weftnet/weft/api"
)

// ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1) puts two tiers
// around NetworkPolicy. For each pod and direction the data plane asks, in
// order:
//
//  1. the Admin tier: its rules by policy priority (lower first), then by
//     their order in the policy; the first that matches decides — Accept,
//     Deny, or Pass (skip the rest of the tier);
//  2. NetworkPolicy: a pod it isolates gets exactly what it allows;
//  3. the Baseline tier, for pods no NetworkPolicy isolates, in the same
//     order as the Admin tier (Accept or Deny);
//  4. otherwise the traffic is allowed.
//
// An egress Accept only ends the sender's side: the receiver's ingress
// rules still apply. Policies of one tier with the same priority are
// ordered by name (the API leaves their order to the implementation).

// Action is what a tier's rule does with the traffic it matches.
type Action uint8

const (
	Accept Action = iota // allowed; no further rule of any tier on this side
	Deny                 // dropped
	Pass                 // the rest of the tier is skipped: NetworkPolicy decides next
)

func (a Action) String() string {
	return [...]string{"Accept", "Deny", "Pass"}[a]
}

// Rule is one ClusterNetworkPolicy rule as it applies to one pod: traffic
// from (ingress) or to (egress) Peers on Ports gets Action. Key, AnyPeer,
// Peers and Ports mean what they mean in an Allow.
type Rule struct {
	Allow
	Action Action
}

// Tiers are the ClusterNetworkPolicy rules of one pod, per tier and
// direction, each list in precedence order.
type Tiers struct {
	AdminIngress, AdminEgress       []Rule
	BaselineIngress, BaselineEgress []Rule
}

// Empty reports whether no rule of either tier applies.
func (t Tiers) Empty() bool {
	return len(t.AdminIngress)+len(t.AdminEgress)+len(t.BaselineIngress)+len(t.BaselineEgress) == 0
}

// Node is what the compiler needs of a Node for a ClusterNetworkPolicy's
// nodes peer: its labels and the addresses of its status.
type Node struct {
	Labels map[string]string
	IPs    []netip.Addr
}

// compiledCNP is a ClusterNetworkPolicy with its subject parsed.
type compiledCNP struct {
	p       *cnp.ClusterNetworkPolicy
	subject func(Pod) bool
}

// clusterPolicies parses the subjects of c's ClusterNetworkPolicies and
// returns them in precedence order; errors name the policies left out.
func (c Cluster) clusterPolicies() ([]compiledCNP, []error) {
	var out []compiledCNP
	var errs []error
	for i := range c.ClusterPolicies {
		p := &c.ClusterPolicies[i]
		if p.Spec.Tier != cnp.AdminTier && p.Spec.Tier != cnp.BaselineTier {
			errs = append(errs, fmt.Errorf("clusternetworkpolicy %s: unknown tier %q", p.Name, p.Spec.Tier))
			continue
		}
		subject, err := c.selector(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods)
		if err != nil {
			errs = append(errs, fmt.Errorf("clusternetworkpolicy %s: subject: %w", p.Name, err))
			continue
		}
		out = append(out, compiledCNP{p, subject})
	}
	slices.SortStableFunc(out, func(a, b compiledCNP) int {
		return cmp.Or(cmp.Compare(a.p.Spec.Priority, b.p.Spec.Priority), cmp.Compare(a.p.Name, b.p.Name))
	})
	return out, errs
}

// selector turns a namespaces or a pods selector (exactly one set) into a
// test on pods. Neither set is a field of a newer API version weft does
// not know: it selects nothing, and the caller decides what that means.
func (c Cluster) selector(nss *metav1.LabelSelector, pods *cnp.NamespacedPod) (func(Pod) bool, error) {
	switch {
	case nss != nil && pods == nil:
		sel, err := metav1.LabelSelectorAsSelector(nss)
		if err != nil {
			return nil, fmt.Errorf("namespaces: %w", err)
		}
		return func(p Pod) bool { return sel.Matches(labels.Set(c.Namespaces[p.Namespace])) }, nil
	case pods != nil && nss == nil:
		nsSel, err := metav1.LabelSelectorAsSelector(&pods.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("pods.namespaceSelector: %w", err)
		}
		podSel, err := metav1.LabelSelectorAsSelector(&pods.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("pods.podSelector: %w", err)
		}
		return func(p Pod) bool {
			return nsSel.Matches(labels.Set(c.Namespaces[p.Namespace])) && podSel.Matches(labels.Set(p.Labels))
		}, nil
	case nss == nil && pods == nil:
		return nil, errNoField
	default:
		return nil, fmt.Errorf("both namespaces and pods are set; want exactly one")
	}
}

var errNoField = fmt.Errorf("no field weft knows is set (a newer API version?)")

// tiers compiles the ClusterNetworkPolicy rules that apply to pod. A rule
// weft cannot read fails closed, as the API asks: an Accept rule matches
// nothing, a Deny or Pass rule matches everything.
func (c Cluster) tiers(pols []compiledCNP, pod Pod, memo map[string]ruleResult, egressMemo map[string][]Rule, errs *[]error, seenErr map[string]bool) Tiers {
	var t Tiers
	report := func(key string, err error) {
		if !seenErr[key] {
			seenErr[key] = true
			*errs = append(*errs, err)
		}
	}
	for _, cp := range pols {
		if !cp.subject(pod) {
			continue
		}
		in, eg := &t.AdminIngress, &t.AdminEgress
		if cp.p.Spec.Tier == cnp.BaselineTier {
			in, eg = &t.BaselineIngress, &t.BaselineEgress
		}
		for i, r := range cp.p.Spec.Ingress {
			key := fmt.Sprintf("cnp:%s/ingress/%d", cp.p.Name, i)
			peers := make([]cnp.ClusterNetworkPolicyEgressPeer, len(r.From))
			for j, f := range r.From {
				peers[j] = cnp.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
			}
			// A named port is the protected pod's own.
			*in = append(*in, c.tierRule(cp.p.Name, key, r.Action, peers, r.Protocols, func(Allow) []PortRange {
				return tierPorts(r.Protocols, pod.Ports)
			}, memo, report)...)
		}
		for i, r := range cp.p.Spec.Egress {
			// An egress rule is the same for every pod it applies to:
			// compiled once (its named ports walk every pod).
			key := fmt.Sprintf("cnp:%s/egress/%d", cp.p.Name, i)
			rules, ok := egressMemo[key]
			if !ok {
				rules = c.tierRule(cp.p.Name, key, r.Action, r.To, r.Protocols, nil, memo, report)
				egressMemo[key] = rules
			}
			*eg = append(*eg, rules...)
		}
	}
	return t
}

// tierRule compiles one rule. Its peers are computed once per rule (memo).
// ingressPorts resolves an ingress rule's protocols for the protected pod;
// nil for egress, where a named port is each destination pod's own, so a
// rule with named ports becomes one Rule per destination pod (as
// egressRule does for NetworkPolicy). A rule weft cannot read fails
// closed, as the API asks: an Accept rule matches nothing, a Deny or Pass
// rule matches everything.
func (c Cluster) tierRule(name, key string, action cnp.ClusterNetworkPolicyRuleAction, peers []cnp.ClusterNetworkPolicyEgressPeer,
	protocols []cnp.ClusterNetworkPolicyProtocol, ingressPorts func(Allow) []PortRange, memo map[string]ruleResult, report func(string, error)) []Rule {
	act, err := ruleAction(action)
	if err != nil {
		report(key, fmt.Errorf("clusternetworkpolicy %s: %w; the rule is left out", name, err))
		return nil
	}
	r, ok := memo[key]
	if !ok {
		a, err := c.tierPeers(peers)
		a.Key = key
		r = ruleResult{[]Allow{a}, err}
		memo[key] = r
	}
	if r.err != nil {
		report(key, fmt.Errorf("clusternetworkpolicy %s: %w", name, r.err))
		if act == Accept {
			return nil
		}
		return []Rule{{Allow: Allow{Key: key, AnyPeer: true}, Action: act}}
	}
	// A rule whose peers do not exist yet stays, matching nothing: pods
	// coming and going change the elements of its sets, not the rules.
	a := r.allows[0]
	if len(protocols) == 0 {
		return []Rule{{Allow: a, Action: act}}
	}
	if ingressPorts != nil {
		if a.Ports = ingressPorts(a); len(a.Ports) == 0 {
			return nil // only named ports the pod does not have
		}
		return []Rule{{Allow: a, Action: act}}
	}
	var out []Rule
	if numeric := tierPorts(protocols, nil); len(numeric) > 0 {
		out = append(out, Rule{Allow: Allow{Key: key, Peers: a.Peers, Ports: numeric}, Action: act})
	}
	if !slices.ContainsFunc(protocols, func(p cnp.ClusterNetworkPolicyProtocol) bool { return p.DestinationNamedPort != "" }) {
		return out
	}
	named := slices.DeleteFunc(slices.Clone(protocols), func(p cnp.ClusterNetworkPolicyProtocol) bool { return p.DestinationNamedPort == "" })
	for _, p := range c.Pods {
		ports := tierPorts(named, p.Ports)
		if len(ports) == 0 {
			continue
		}
		var mine []netip.Prefix
		for _, ip := range hostPrefixes(p.IPs) {
			if slices.ContainsFunc(a.Peers, func(q netip.Prefix) bool { return q.Overlaps(ip) }) {
				mine = append(mine, ip)
			}
		}
		if len(mine) > 0 {
			out = append(out, Rule{Allow: Allow{Key: key + "/" + p.Namespace + "/" + p.Name, Peers: mine, Ports: ports}, Action: act})
		}
	}
	return out
}

func ruleAction(a cnp.ClusterNetworkPolicyRuleAction) (Action, error) {
	switch a {
	case cnp.ClusterNetworkPolicyRuleActionAccept:
		return Accept, nil
	case cnp.ClusterNetworkPolicyRuleActionDeny:
		return Deny, nil
	case cnp.ClusterNetworkPolicyRuleActionPass:
		return Pass, nil
	}
	return 0, fmt.Errorf("unknown action %q", a)
}

// tierPeers is the union of a rule's peers: pods of the selected
// namespaces, selected pods, the selected nodes' addresses, networks.
func (c Cluster) tierPeers(peers []cnp.ClusterNetworkPolicyEgressPeer) (Allow, error) {
	var a Allow
	if len(peers) == 0 {
		return a, fmt.Errorf("a rule without peers")
	}
	for _, peer := range peers {
		set := 0
		if peer.Namespaces != nil || peer.Pods != nil {
			set++
			sel, err := c.selector(peer.Namespaces, peer.Pods)
			if err != nil {
				return Allow{}, err
			}
			for _, p := range c.Pods {
				if sel(p) {
					a.Peers = append(a.Peers, hostPrefixes(p.IPs)...)
				}
			}
		}
		if peer.Nodes != nil {
			set++
			sel, err := metav1.LabelSelectorAsSelector(peer.Nodes)
			if err != nil {
				return Allow{}, fmt.Errorf("nodes: %w", err)
			}
			for _, n := range c.Nodes {
				if sel.Matches(labels.Set(n.Labels)) {
					a.Peers = append(a.Peers, hostPrefixes(n.IPs)...)
				}
			}
		}
		if len(peer.Networks) > 0 {
			set++
			for _, n := range peer.Networks {
				p, err := netip.ParsePrefix(string(n))
				if err != nil {
					return Allow{}, fmt.Errorf("networks: %w", err)
				}
				a.Peers = append(a.Peers, p.Masked())
			}
		}
		if len(peer.DomainNames) > 0 {
			return Allow{}, fmt.Errorf("domainNames peers are not supported")
		}
		if set == 0 {
			return Allow{}, errNoField
		}
	}
	a.Peers = api.Disjoint(a.Peers)
	return a, nil
}

// tierPorts turns a rule's protocols into port ranges. A protocol without
// a destination port is every port of it; a named port resolves against
// podPorts (the protected pod's for ingress, a destination's for egress),
// and is left out without them.
func tierPorts(protocols []cnp.ClusterNetworkPolicyProtocol, podPorts []corev1.ContainerPort) []PortRange {
	var out []PortRange
	add := func(proto corev1.Protocol, port *cnp.Port) {
		switch {
		case port == nil:
			out = append(out, PortRange{proto, 1, 65535})
		case port.Range != nil:
			if port.Range.Start >= 1 && port.Range.End <= 65535 && port.Range.Start <= port.Range.End {
				out = append(out, PortRange{proto, uint16(port.Range.Start), uint16(port.Range.End)})
			}
		case port.Number >= 1 && port.Number <= 65535:
			out = append(out, PortRange{proto, uint16(port.Number), uint16(port.Number)})
		}
	}
	for _, p := range protocols {
		switch {
		case p.TCP != nil:
			add(corev1.ProtocolTCP, p.TCP.DestinationPort)
		case p.UDP != nil:
			add(corev1.ProtocolUDP, p.UDP.DestinationPort)
		case p.SCTP != nil:
			add(corev1.ProtocolSCTP, p.SCTP.DestinationPort)
		case p.DestinationNamedPort != "":
			for _, cp := range podPorts {
				proto := cmp.Or(cp.Protocol, corev1.ProtocolTCP)
				if cp.Name == p.DestinationNamedPort && cp.ContainerPort >= 1 && cp.ContainerPort <= 65535 {
					out = append(out, PortRange{proto, uint16(cp.ContainerPort), uint16(cp.ContainerPort)})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return slices.Compact(out)
}
