package policy

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The compiled form of ClusterNetworkPolicy; the lab's truth table
// (e2e/policy, cnp_test.go) proves what the kernel does with it.

func clusterPolicy(name string, tier cnp.Tier, prio int32, ingress ...cnp.ClusterNetworkPolicyIngressRule) cnp.ClusterNetworkPolicy {
	return cnp.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cnp.ClusterNetworkPolicySpec{Tier: tier, Priority: prio,
		Subject: cnp.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "x"}}}, Ingress: ingress}}
}

func fromNS(action cnp.ClusterNetworkPolicyRuleAction, ns string) cnp.ClusterNetworkPolicyIngressRule {
	return cnp.ClusterNetworkPolicyIngressRule{Action: action,
		From: []cnp.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": ns}}}}}
}

// rules prints a tier's rules as action:peers@ports.
func rules(rs []Rule) string {
	var parts []string
	for _, r := range rs {
		one := render(PodPolicy{IngressIsolated: true, Ingress: []Allow{r.Allow}}) // I=true{...} E=false{}
		parts = append(parts, r.Action.String()+":"+one[len("I=true{"):strings.Index(one, "} E=")])
	}
	return strings.Join(parts, " ")
}

func TestTiersInPrecedenceOrder(t *testing.T) {
	c := testCluster()
	c.ClusterPolicies = []cnp.ClusterNetworkPolicy{
		clusterPolicy("b-late", cnp.AdminTier, 20, fromNS(cnp.ClusterNetworkPolicyRuleActionDeny, "z")),
		clusterPolicy("a-early", cnp.AdminTier, 10, fromNS(cnp.ClusterNetworkPolicyRuleActionPass, "y"), fromNS(cnp.ClusterNetworkPolicyRuleActionAccept, "z")),
		clusterPolicy("base", cnp.BaselineTier, 0, fromNS(cnp.ClusterNetworkPolicyRuleActionDeny, "y")),
		clusterPolicy("a-same-priority", cnp.AdminTier, 20, fromNS(cnp.ClusterNetworkPolicyRuleActionAccept, "x")),
	}
	got, errs := Compile(c, c.Pods[:1])
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// Priority first, then name (same priority), then rule order.
	if want := "Pass:[10.244.2.2 10.244.2.3 10.244.2.4]@all Accept:[10.244.3.2 10.244.3.3 10.244.3.4]@all " +
		"Accept:[10.244.1.2 10.244.1.3 10.244.1.4]@all Deny:[10.244.3.2 10.244.3.3 10.244.3.4]@all"; rules(got[0].AdminIngress) != want {
		t.Errorf("admin tier:\n got %s\nwant %s", rules(got[0].AdminIngress), want)
	}
	if want := "Deny:[10.244.2.2 10.244.2.3 10.244.2.4]@all"; rules(got[0].BaselineIngress) != want {
		t.Errorf("baseline tier: got %s, want %s", rules(got[0].BaselineIngress), want)
	}
	if len(got[0].AdminEgress)+len(got[0].BaselineEgress) != 0 || got[0].IngressIsolated {
		t.Errorf("egress or isolation where no policy asks: %+v", got[0])
	}
}

// A peer with no field weft knows (a newer API) fails closed: an Accept
// rule matches nothing, a Deny or Pass rule everything.
func TestUnknownPeerFailsClosed(t *testing.T) {
	c := testCluster()
	unknown := []cnp.ClusterNetworkPolicyIngressPeer{{}}
	c.ClusterPolicies = []cnp.ClusterNetworkPolicy{clusterPolicy("p", cnp.AdminTier, 1,
		cnp.ClusterNetworkPolicyIngressRule{Action: cnp.ClusterNetworkPolicyRuleActionAccept, From: unknown},
		cnp.ClusterNetworkPolicyIngressRule{Action: cnp.ClusterNetworkPolicyRuleActionPass, From: unknown},
		cnp.ClusterNetworkPolicyIngressRule{Action: cnp.ClusterNetworkPolicyRuleActionDeny, From: unknown})}
	got, errs := Compile(c, c.Pods[:1])
	if len(errs) != 3 {
		t.Errorf("errors = %v; want one per rule", errs)
	}
	if want := "Pass:any@all Deny:any@all"; rules(got[0].AdminIngress) != want {
		t.Errorf("got %s, want %s", rules(got[0].AdminIngress), want)
	}
}

// Ports: numbers, ranges, a protocol without a port, and a named port
// resolved on each destination for egress.
func TestTierPorts(t *testing.T) {
	c := testCluster()
	p := clusterPolicy("p", cnp.AdminTier, 1)
	p.Spec.Egress = []cnp.ClusterNetworkPolicyEgressRule{{Action: cnp.ClusterNetworkPolicyRuleActionDeny,
		To: []cnp.ClusterNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "y"}}}},
		Protocols: []cnp.ClusterNetworkPolicyProtocol{
			{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnp.Port{Range: &cnp.PortRange{Start: 8000, End: 8080}}}},
			{UDP: &cnp.ClusterNetworkPolicyProtocolUDP{}},
			{DestinationNamedPort: "serve-80"},
		}}}
	c.ClusterPolicies = []cnp.ClusterNetworkPolicy{p}
	got, errs := Compile(c, c.Pods[:1])
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// y/c has no serve-80: the named port reaches y/a and y/b only.
	want := "Deny:[10.244.2.2 10.244.2.3 10.244.2.4]@TCP/8000-8080,UDP/1-65535 Deny:[10.244.2.2]@TCP/80 Deny:[10.244.2.3]@TCP/80"
	if rules(got[0].AdminEgress) != want {
		t.Errorf("got  %s\nwant %s", rules(got[0].AdminEgress), want)
	}
}
