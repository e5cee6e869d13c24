package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The test cluster: namespaces x, y, z (labelled ns=<name>), pods a, b, c
// in each (labelled pod=<name>), with a containerPort "serve-80" on 80/TCP
// except in pod c.
func testCluster(policies ...networkingv1.NetworkPolicy) Cluster {
	c := Cluster{Namespaces: map[string]map[string]string{}, Policies: policies}
	for i, ns := range []string{"x", "y", "z"} {
		c.Namespaces[ns] = map[string]string{"ns": ns}
		for j, name := range []string{"a", "b", "c"} {
			p := Pod{Namespace: ns, Name: name, Labels: map[string]string{"pod": name},
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i + 1), byte(j + 2)})}}
			if name != "c" {
				p.Ports = []corev1.ContainerPort{{Name: "serve-80", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}
			}
			c.Pods = append(c.Pods, p)
		}
	}
	return c
}

func pol(ns, name string, sel map[string]string, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, PolicyTypes: types, Ingress: in, Egress: eg}}
}

func podSel(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }

func port(proto corev1.Protocol, p intstr.IntOrString, end ...int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
	if len(end) > 0 {
		np.EndPort = &end[0]
	}
	return np
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
)

// render prints a PodPolicy compactly: I/E isolation, then allows as
// peers@ports.
func render(p PodPolicy) string {
	one := func(as []Allow) string {
		var parts []string
		for _, a := range as {
			peers := "any"
			if !a.AnyPeer {
				var ps []string
				for _, x := range a.Peers {
					ps = append(ps, strings.TrimSuffix(x.String(), "/32"))
				}
				peers = "[" + strings.Join(ps, " ") + "]"
			}
			var ports []string
			for _, r := range a.Ports {
				if r.From == r.To {
					ports = append(ports, fmt.Sprintf("%s/%d", r.Protocol, r.From))
				} else {
					ports = append(ports, fmt.Sprintf("%s/%d-%d", r.Protocol, r.From, r.To))
				}
			}
			if len(ports) == 0 {
				ports = []string{"all"}
			}
			parts = append(parts, peers+"@"+strings.Join(ports, ","))
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprintf("I=%v{%s} E=%v{%s}", p.IngressIsolated, one(p.Ingress), p.EgressIsolated, one(p.Egress))
}

func TestCompile(t *testing.T) {
	allX := map[string]string{}
	cases := []struct {
		name     string
		policies []networkingv1.NetworkPolicy
		pod      string // ns/name of the local pod
		want     string
	}{
		{"no policy: nothing isolated", nil, "x/a", "I=false{} E=false{}"},
		{"default deny ingress", []networkingv1.NetworkPolicy{pol("x", "deny", allX, ingressOnly, nil, nil)}, "x/a", "I=true{} E=false{}"},
		{"policy in another namespace selects nothing here", []networkingv1.NetworkPolicy{pol("y", "deny", allX, ingressOnly, nil, nil)}, "x/a", "I=false{} E=false{}"},
		{"podSelector that does not match", []networkingv1.NetworkPolicy{pol("x", "deny-b", map[string]string{"pod": "b"}, ingressOnly, nil, nil)}, "x/a", "I=false{} E=false{}"},
		{"allow from pod b in the same namespace", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}}}, nil)},
			"x/a", "I=true{[10.244.1.3]@all} E=false{}"},
		{"allow from namespace y", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: podSel(map[string]string{"ns": "y"})}}}}, nil)},
			"x/a", "I=true{[10.244.2.2 10.244.2.3 10.244.2.4]@all} E=false{}"},
		{"pod AND namespace selector in one peer", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: podSel(map[string]string{"ns": "y"}), PodSelector: podSel(map[string]string{"pod": "c"})}}}}, nil)},
			"x/a", "I=true{[10.244.2.4]@all} E=false{}"},
		{"pod OR namespace selector as two peers", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: podSel(map[string]string{"ns": "z"})}, {PodSelector: podSel(map[string]string{"pod": "c"})}}}}, nil)},
			"x/a", "I=true{[10.244.1.4 10.244.3.2 10.244.3.3 10.244.3.4]@all} E=false{}"},
		{"all namespaces with an empty namespaceSelector", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: podSel(map[string]string{"pod": "b"})}}}}, nil)},
			"x/a", "I=true{[10.244.1.3 10.244.2.3 10.244.3.3]@all} E=false{}"},
		{"rule with no from allows every source", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, intstr.FromInt32(81))}}}, nil)},
			"x/a", "I=true{any@UDP/81} E=false{}"},
		{"ipBlock with except", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.2.0/24", "10.244.128.0/17"}}}}}}, nil)},
			"x/a", "I=true{[10.244.0.0/23 10.244.3.0/24 10.244.4.0/22 10.244.8.0/21 10.244.16.0/20 10.244.32.0/19 10.244.64.0/18]@all} E=false{}"},
		{"ports: TCP default, SCTP, endPort range", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(80))}, port(corev1.ProtocolSCTP, intstr.FromInt32(9000)), port(corev1.ProtocolTCP, intstr.FromInt32(30000), 30100)}}}, nil)},
			"x/a", "I=true{any@SCTP/9000,TCP/80,TCP/30000-30100} E=false{}"},
		{"named ingress port resolves on the destination pod", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-80"))}}}, nil)},
			"x/a", "I=true{any@TCP/80} E=false{}"},
		{"named port the pod lacks matches nothing", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-80"))}}}, nil)},
			"x/c", "I=true{} E=false{}"},
		{"named port with the wrong protocol matches nothing", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, intstr.FromString("serve-80"))}}}, nil)},
			"x/a", "I=true{} E=false{}"},
		{"egress named port resolves per destination pod", []networkingv1.NetworkPolicy{pol("x", "p", allX, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: podSel(map[string]string{"ns": "y"})}}, Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-80"))}}})},
			"x/a", "I=false{} E=true{[10.244.2.2 10.244.2.3]@TCP/80}"},
		{"egress named port with no peer resolves on every pod that has it", []networkingv1.NetworkPolicy{pol("x", "p", allX, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-80"))}}})},
			"x/a", "I=false{} E=true{[10.244.1.2 10.244.1.3 10.244.2.2 10.244.2.3 10.244.3.2 10.244.3.3]@TCP/80}"},
		{"egress named port to an ipBlock resolves on the pods inside it", []networkingv1.NetworkPolicy{pol("x", "p", allX, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.3.0/24", Except: []string{"10.244.3.2/32"}}}},
				Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-80"))}}})},
			"x/a", "I=false{} E=true{[10.244.3.3]@TCP/80}"},
		{"SCTP port", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolSCTP, intstr.FromInt32(9000))}}}, nil)},
			"x/a", "I=true{any@SCTP/9000} E=false{}"},
		{"egress rules imply Egress when policyTypes is empty", []networkingv1.NetworkPolicy{pol("x", "p", allX, nil, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24"}}}}})},
			"x/a", "I=true{} E=true{[192.0.2.0/24]@all}"},
		{"Egress-only policy leaves ingress open", []networkingv1.NetworkPolicy{pol("x", "p", allX, egressOnly, nil, nil)}, "x/a", "I=false{} E=true{}"},
		{"two policies combine as a union", []networkingv1.NetworkPolicy{
			pol("x", "p1", allX, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}}}, nil),
			pol("x", "p2", map[string]string{"pod": "a"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "c"})}}}}, nil)},
			"x/a", "I=true{[10.244.1.3]@all [10.244.1.4]@all} E=false{}"},
		{"selector that matches no pod allows nothing", []networkingv1.NetworkPolicy{pol("x", "p", allX, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "nope"})}}}}, nil)},
			"x/a", "I=true{[]@all} E=false{}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster(tc.policies...)
			ns, name, _ := strings.Cut(tc.pod, "/")
			var local []Pod
			for _, p := range c.Pods {
				if p.Namespace == ns && p.Name == name {
					local = append(local, p)
				}
			}
			got, errs := Compile(c, local)
			if len(errs) > 0 || len(got) != 1 {
				t.Fatalf("errors %v, %d results", errs, len(got))
			}
			if r := render(got[0]); r != tc.want {
				t.Fatalf("got  %s\nwant %s", r, tc.want)
			}
		})
	}
}

func TestCompileReportsBadSelectors(t *testing.T) {
	bad := pol("x", "bad", nil, ingressOnly, nil, nil)
	bad.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}
	c := testCluster(bad)
	got, errs := Compile(c, c.Pods[:1])
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "x/bad") || got[0].IngressIsolated {
		t.Fatalf("errs %v, policy %+v: a broken policy must be reported and select nothing", errs, got)
	}
}

func ptr[T any](v T) *T { return &v }
