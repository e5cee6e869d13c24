package policy

import (
	"context"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1) in the truth
// table: each case's expectation is written from the API's documented
// semantics (the Admin tier by priority, then rule order, first match
// decides; Pass hands over to NetworkPolicy; NetworkPolicy decides for the
// pods it isolates; the Baseline tier for the others; allowed otherwise;
// an egress Accept still leaves the receiver's ingress to decide), not
// from what weft compiles.

// cnpCase is a one-step case with ClusterNetworkPolicies.
func cnpCase(name string, cnps []*cnp.ClusterNetworkPolicy, nps func(*npLab) []*networkingv1.NetworkPolicy, expect expectation) npCase {
	return npCase{name, []npStep{{policies: nps, cluster: func(*npLab) []*cnp.ClusterNetworkPolicy { return cnps }, expect: expect}}}
}

func cnpOf(name string, tier cnp.Tier, priority int32, subject cnp.ClusterNetworkPolicySubject) *cnp.ClusterNetworkPolicy {
	return &cnp.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cnp.ClusterNetworkPolicySpec{Tier: tier, Priority: priority, Subject: subject}}
}

// subjectPod selects pod <pod> of namespace <ns> (by their labels).
func subjectPod(ns, pod string) cnp.ClusterNetworkPolicySubject {
	return cnp.ClusterNetworkPolicySubject{Pods: &cnp.NamespacedPod{NamespaceSelector: *sel("ns", ns), PodSelector: *sel("pod", pod)}}
}

func subjectNamespace(ns string) cnp.ClusterNetworkPolicySubject {
	return cnp.ClusterNetworkPolicySubject{Namespaces: sel("ns", ns)}
}

func fromNamespaces(s *metav1.LabelSelector) cnp.ClusterNetworkPolicyIngressPeer {
	return cnp.ClusterNetworkPolicyIngressPeer{Namespaces: s}
}

func fromPods(ns, pod *metav1.LabelSelector) cnp.ClusterNetworkPolicyIngressPeer {
	return cnp.ClusterNetworkPolicyIngressPeer{Pods: &cnp.NamespacedPod{NamespaceSelector: *ns, PodSelector: *pod}}
}

func in(action cnp.ClusterNetworkPolicyRuleAction, from []cnp.ClusterNetworkPolicyIngressPeer, protocols ...cnp.ClusterNetworkPolicyProtocol) cnp.ClusterNetworkPolicyIngressRule {
	return cnp.ClusterNetworkPolicyIngressRule{Action: action, From: from, Protocols: protocols}
}

func out(action cnp.ClusterNetworkPolicyRuleAction, to []cnp.ClusterNetworkPolicyEgressPeer, protocols ...cnp.ClusterNetworkPolicyProtocol) cnp.ClusterNetworkPolicyEgressRule {
	return cnp.ClusterNetworkPolicyEgressRule{Action: action, To: to, Protocols: protocols}
}

func ingressRules(p *cnp.ClusterNetworkPolicy, rules ...cnp.ClusterNetworkPolicyIngressRule) *cnp.ClusterNetworkPolicy {
	p.Spec.Ingress = rules
	return p
}

func egressRules(p *cnp.ClusterNetworkPolicy, rules ...cnp.ClusterNetworkPolicyEgressRule) *cnp.ClusterNetworkPolicy {
	p.Spec.Egress = rules
	return p
}

func tcp(port int32) cnp.ClusterNetworkPolicyProtocol {
	return cnp.ClusterNetworkPolicyProtocol{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnp.Port{Number: port}}}
}

func tcpRange(from, to int32) cnp.ClusterNetworkPolicyProtocol {
	return cnp.ClusterNetworkPolicyProtocol{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnp.Port{Range: &cnp.PortRange{Start: from, End: to}}}}
}

// udpRange: the API has no "every port" of a protocol (a protocol needs
// its destinationPort).
func udpRange(from, to int32) cnp.ClusterNetworkPolicyProtocol {
	return cnp.ClusterNetworkPolicyProtocol{UDP: &cnp.ClusterNetworkPolicyProtocolUDP{DestinationPort: &cnp.Port{Range: &cnp.PortRange{Start: from, End: to}}}}
}

const (
	accept = cnp.ClusterNetworkPolicyRuleActionAccept
	deny   = cnp.ClusterNetworkPolicyRuleActionDeny
	pass   = cnp.ClusterNetworkPolicyRuleActionPass
)

var everyNamespace = []cnp.ClusterNetworkPolicyIngressPeer{fromNamespaces(sel())}

func cnpCases() []npCase {
	ns := func(n string) []cnp.ClusterNetworkPolicyIngressPeer {
		return []cnp.ClusterNetworkPolicyIngressPeer{fromNamespaces(sel("ns", n))}
	}
	return []npCase{
		cnpCase("CNP admin: x/a denies namespace y", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("deny-y", cnp.AdminTier, 10, subjectPod("x", "a")), in(deny, ns("y")))},
			fixed(), toXA(func(from *npPod, _ probe) bool { return from.ns != "y" })),
		cnpCase("CNP admin Deny overrides a NetworkPolicy that allows", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("deny-y", cnp.AdminTier, 10, subjectPod("x", "a")), in(deny, ns("y")))},
			fixed(ingressXA("allow-all", rule{})), toXA(func(from *npPod, _ probe) bool { return from.ns != "y" })),
		cnpCase("CNP admin Accept overrides a NetworkPolicy that denies", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("accept-y", cnp.AdminTier, 10, subjectPod("x", "a")), in(accept, ns("y")))},
			fixed(denyIngress("x", sel("pod", "a"))), toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })),
		cnpCase("CNP admin Pass skips the rest of the tier", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("pass-y", cnp.AdminTier, 10, subjectPod("x", "a")), in(pass, ns("y"))),
			ingressRules(cnpOf("deny-all", cnp.AdminTier, 20, subjectPod("x", "a")), in(deny, everyNamespace))},
			fixed(), toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })),
		cnpCase("CNP admin Pass hands over to NetworkPolicy", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("pass-all", cnp.AdminTier, 10, subjectPod("x", "a")), in(pass, everyNamespace)),
			ingressRules(cnpOf("accept-all", cnp.AdminTier, 20, subjectPod("x", "a")), in(accept, everyNamespace))},
			fixed(ingressXA("from-z", rule{peers: peers(namespaces(sel("ns", "z")))})),
			toXA(func(from *npPod, _ probe) bool { return from.ns == "z" })),
		cnpCase("CNP admin priorities: the lower number decides first", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("deny-all", cnp.AdminTier, 20, subjectPod("x", "a")), in(deny, everyNamespace)),
			ingressRules(cnpOf("accept-z", cnp.AdminTier, 5, subjectPod("x", "a")), in(accept, ns("z")))},
			fixed(), toXA(func(from *npPod, _ probe) bool { return from.ns == "z" })),
		cnpCase("CNP rules of one policy decide in their order", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("y-tcp-80-only", cnp.AdminTier, 10, subjectPod("x", "a")),
				in(accept, ns("y"), tcp(80)), in(deny, ns("y")))},
			fixed(), toXA(func(from *npPod, pr probe) bool { return from.ns != "y" || is(pr, "tcp", 80) })),
		cnpCase("CNP admin: a port range and a protocol", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("deny-tcp", cnp.AdminTier, 10, subjectNamespace("x")), in(deny, everyNamespace, tcpRange(80, 81)))},
			fixed(), func(from, to *npPod, pr probe) bool { return to.ns != "x" || pr.proto != "tcp" }),
		cnpCase("CNP admin: pods b of every namespace", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("deny-b", cnp.AdminTier, 10, subjectPod("x", "a")),
				in(deny, []cnp.ClusterNetworkPolicyIngressPeer{fromPods(sel(), sel("pod", "b"))}))},
			fixed(), toXA(func(from *npPod, _ probe) bool { return from.name != "b" })),
		cnpCase("CNP baseline applies where no NetworkPolicy isolates", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("baseline-deny", cnp.BaselineTier, 10, subjectNamespace("x")), in(deny, everyNamespace))},
			fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
			func(from, to *npPod, _ probe) bool {
				switch {
				case to.is("x/a"):
					return from.ns == "y" // NetworkPolicy decides for the pod it isolates
				case to.ns == "x":
					return false // the baseline for the others
				}
				return true
			}),
		cnpCase("CNP baseline Accept does not undo an admin Deny", []*cnp.ClusterNetworkPolicy{
			ingressRules(cnpOf("admin-deny-z", cnp.AdminTier, 10, subjectPod("x", "a")), in(deny, ns("z"))),
			ingressRules(cnpOf("baseline-accept", cnp.BaselineTier, 10, subjectPod("x", "a")), in(accept, everyNamespace)),
			ingressRules(cnpOf("baseline-deny", cnp.BaselineTier, 20, subjectPod("x", "a")), in(deny, everyNamespace))},
			fixed(), toXA(func(from *npPod, _ probe) bool { return from.ns != "z" })),
		cnpCase("CNP admin egress: x/a may not send UDP to namespace z", []*cnp.ClusterNetworkPolicy{
			egressRules(cnpOf("no-udp-to-z", cnp.AdminTier, 10, subjectPod("x", "a")),
				out(deny, []cnp.ClusterNetworkPolicyEgressPeer{{Namespaces: sel("ns", "z")}}, udpRange(1, 65535)))},
			fixed(), fromXA(func(to *npPod, pr probe) bool { return to.ns != "z" || pr.proto != "udp" })),
		cnpCase("CNP admin egress Accept leaves the receiver's NetworkPolicy to decide", []*cnp.ClusterNetworkPolicy{
			egressRules(cnpOf("x-a-sends", cnp.AdminTier, 10, subjectPod("x", "a")),
				out(accept, []cnp.ClusterNetworkPolicyEgressPeer{{Namespaces: sel()}}))},
			fixed(denyIngress("y", sel("pod", "b")), denyEgress("x", sel("pod", "a"))),
			func(from, to *npPod, _ probe) bool { return !to.is("y/b") }),
		{"CNP admin egress Deny to networks (one pod's addresses)", []npStep{{policies: fixed(),
			cluster: func(l *npLab) []*cnp.ClusterNetworkPolicy {
				yb := l.by["y/b"]
				return []*cnp.ClusterNetworkPolicy{egressRules(cnpOf("no-y-b", cnp.AdminTier, 10, subjectPod("x", "a")),
					out(deny, []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{cnp.CIDR(hostPrefix(yb.addr(false))), cnp.CIDR(hostPrefix(yb.addr(true)))}}}))}
			},
			expect: fromXA(func(to *npPod, _ probe) bool { return !to.is("y/b") })}}},
		cnpCase("CNP admin egress Deny to ::/0 stops IPv6 only", []*cnp.ClusterNetworkPolicy{
			egressRules(cnpOf("no-v6", cnp.AdminTier, 10, subjectPod("x", "a")),
				out(deny, []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{"::/0"}}}))},
			fixed(), fromXA(func(_ *npPod, pr probe) bool { return !pr.v6 })),
	}
}

// syncClusterPolicies makes the cluster's ClusterNetworkPolicies exactly
// want.
func (l *npLab) syncClusterPolicies(want []*cnp.ClusterNetworkPolicy) {
	l.T.Helper()
	ctx := context.Background()
	cs, err := cnpclient.NewForConfig(l.Cp.AdminREST)
	if err != nil {
		l.T.Fatal(err)
	}
	c := cs.PolicyV1beta1().ClusterNetworkPolicies()
	keep := map[string]bool{}
	for _, p := range want {
		keep[p.Name] = true
		if err := upsert(ctx, c, p.DeepCopy()); err != nil {
			l.T.Fatalf("clusternetworkpolicy %s: %v", p.Name, err)
		}
	}
	list, err := c.List(ctx, metav1.ListOptions{})
	if err != nil {
		l.T.Fatal(err)
	}
	for _, p := range list.Items {
		if !keep[p.Name] {
			if err := c.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				l.T.Fatal(err)
			}
		}
	}
}
