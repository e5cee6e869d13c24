package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// FuzzIPBlock: a tenant's ipBlock. What compiles is disjoint, within the
// CIDR, misses every exception, and stays under the element bound.
func FuzzIPBlock(f *testing.F) {
	f.Add("10.0.0.0/8", "10.1.0.0/16,10.2.3.4/32")
	f.Add("::/0", "2001:db8::/32,::1/128")
	f.Add("10.0.0.1/8", "bogus")
	f.Fuzz(func(t *testing.T, cidr, excepts string) {
		var ex []string
		if excepts != "" {
			ex = strings.Split(excepts, ",")
		}
		if len(ex) > 64 {
			ex = ex[:64]
		}
		got, err := ipBlock(&networkingv1.IPBlock{CIDR: cidr, Except: ex})
		if err != nil {
			return
		}
		if len(got) > MaxIPBlockPrefixes {
			t.Fatalf("%d prefixes", len(got))
		}
		c := netip.MustParsePrefix(cidr).Masked()
		for i, p := range got {
			if !c.Contains(p.Addr()) || p.Bits() < c.Bits() {
				t.Fatalf("%s is outside %s", p, c)
			}
			if i > 0 && got[i-1].Overlaps(p) {
				t.Fatalf("%s overlaps %s", got[i-1], p)
			}
			for _, e := range ex {
				if ep, err := netip.ParsePrefix(e); err == nil && ep.Masked().Overlaps(p) {
					t.Fatalf("%s overlaps exception %s", p, e)
				}
			}
		}
	})
}

// FuzzCompile: one policy with fuzzed selectors, ports and peers over a
// small cluster. Compile never fails open: a pod a policy selects stays
// isolated, whatever the rest of the policy says.
func FuzzCompile(f *testing.F) {
	f.Add("app", "web", "http", int32(80), "10.0.0.0/8", "10.1.0.0/16", "team", "a")
	f.Add("", "", "", int32(0), "", "", "", "")
	f.Add("app", "web", "nope", int32(70000), "::/0", "::1/128", "k", "!")
	f.Fuzz(func(t *testing.T, key, val, portName string, port int32, cidr, except, nsKey, nsVal string) {
		c := Cluster{Namespaces: map[string]map[string]string{"a": {nsKey: nsVal}, "b": {"team": "b"}}}
		for i, ns := range []string{"a", "a", "b"} {
			c.Pods = append(c.Pods, Pod{Namespace: ns, Name: string(rune('p' + i)), Labels: map[string]string{key: val, "i": string(rune('0' + i))},
				IPs:   []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + i)})},
				Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}})
		}
		peer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: val}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{nsKey: nsVal}}}
		ports := []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: portName}},
			{Port: &intstr.IntOrString{Type: intstr.Int, IntVal: port}}}
		from := []networkingv1.NetworkPolicyPeer{peer}
		if cidr != "" {
			from = append(from, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: strings.Split(except, ",")}})
		}
		c.Policies = []networkingv1.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{key: val}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: ports}},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{To: from, Ports: ports}},
			}}}
		pps, _ := Compile(c, c.Pods)
		sel, err := metav1.LabelSelectorAsSelector(&c.Policies[0].Spec.PodSelector)
		if err != nil {
			return
		}
		for _, p := range c.Pods {
			if p.Namespace != "a" || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			i := slices.IndexFunc(pps, func(pp PodPolicy) bool { return pp.Namespace == p.Namespace && pp.Name == p.Name })
			if i < 0 || !pps[i].IngressIsolated || !pps[i].EgressIsolated {
				t.Fatalf("pod %s/%s is selected but not isolated both ways", p.Namespace, p.Name)
			}
		}
	})
}
