package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// npStep is one state of the cluster's policies (and labels) and the
// reachability it must produce.
type npStep struct {
	policies func(l *npLab) []*networkingv1.NetworkPolicy
	cluster  func(l *npLab) []*cnp.ClusterNetworkPolicy // none when nil
	labels   map[string]map[string]string               // "x/a" or "x" -> labels, set before probing
	expect   expectation
}

type npCase struct {
	name  string
	steps []npStep
}

func one(name string, policies func(l *npLab) []*networkingv1.NetworkPolicy, expect expectation) npCase {
	return npCase{name, []npStep{{policies: policies, expect: expect}}}
}

func fixed(ps ...*networkingv1.NetworkPolicy) func(*npLab) []*networkingv1.NetworkPolicy {
	return func(*npLab) []*networkingv1.NetworkPolicy { return ps }
}

func denyIngress(ns string, target *metav1.LabelSelector) *networkingv1.NetworkPolicy {
	return policyOf(ns, "deny-ingress", target, onlyIngress, nil, nil)
}

func denyEgress(ns string, target *metav1.LabelSelector) *networkingv1.NetworkPolicy {
	return policyOf(ns, "deny-egress", target, onlyEgress, nil, nil)
}

func denyBoth(ns string) *networkingv1.NetworkPolicy {
	return policyOf(ns, "deny-all", sel(), bothTypes, nil, nil)
}

// toXA applies rule only to traffic into x/a; everything else flows.
func toXA(rule func(from *npPod, pr probe) bool) expectation {
	return func(from, to *npPod, pr probe) bool { return !to.is("x/a") || rule(from, pr) }
}

// fromXA applies rule only to traffic out of x/a.
func fromXA(rule func(to *npPod, pr probe) bool) expectation {
	return func(from, to *npPod, pr probe) bool { return !from.is("x/a") || rule(to, pr) }
}

func everything(*npPod, *npPod, probe) bool { return true }

func is(pr probe, proto string, port int) bool { return pr.proto == proto && pr.port == port }

// ingressXA is a policy in x selecting pod a with the given ingress rules.
func ingressXA(name string, rules ...rule) *networkingv1.NetworkPolicy {
	return policyOf("x", name, sel("pod", "a"), onlyIngress, rules, nil)
}

func egressXA(name string, rules ...rule) *networkingv1.NetworkPolicy {
	return policyOf("x", name, sel("pod", "a"), onlyEgress, nil, rules)
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return ps }

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// npCases are the upstream network-policy e2e scenarios in our own words,
// plus endPort, ipBlock, IPv6 and label-change cases.
func npCases() []npCase {
	return []npCase{
		one("no policy: every pod reaches every pod", fixed(), everything),
		one("default deny ingress in x", fixed(denyIngress("x", sel())),
			func(from, to *npPod, pr probe) bool { return to.ns != "x" }),
		one("default deny egress in x", fixed(denyEgress("x", sel())),
			func(from, to *npPod, pr probe) bool { return from.ns != "x" }),
		one("default deny both ways in x", fixed(denyBoth("x")),
			func(from, to *npPod, pr probe) bool { return from.ns != "x" && to.ns != "x" }),
		one("allow-all ingress beside default deny in x", fixed(denyIngress("x", sel()),
			policyOf("x", "allow-all", sel(), onlyIngress, []rule{{}}, nil)), everything),
		one("allow-all egress beside default deny egress in x", fixed(denyEgress("x", sel()),
			policyOf("x", "allow-all", sel(), onlyEgress, nil, []rule{{}})), everything),
		one("deny ingress to x/a only", fixed(denyIngress("x", sel("pod", "a"))),
			toXA(func(*npPod, probe) bool { return false })),
		one("x/a admits pod b of its own namespace", fixed(ingressXA("from-b", rule{peers: peers(pods(sel("pod", "b")))})),
			toXA(func(from *npPod, _ probe) bool { return from.is("x/b") })),
		one("x/a admits namespace y", fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
			toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })),
		one("x/a admits every namespace but x (NotIn)", fixed(ingressXA("not-x",
			rule{peers: peers(namespaces(selExpr("ns", metav1.LabelSelectorOpNotIn, "x")))})),
			toXA(func(from *npPod, _ probe) bool { return from.ns != "x" })),
		one("x/a admits pods b of every namespace", fixed(ingressXA("b-anywhere", rule{peers: peers(podsIn(sel(), sel("pod", "b")))})),
			toXA(func(from *npPod, _ probe) bool { return from.name == "b" })),
		one("x/a admits pod b of namespace y (both selectors in one peer: AND)", fixed(ingressXA("y-and-b",
			rule{peers: peers(podsIn(sel("ns", "y"), sel("pod", "b")))})),
			toXA(func(from *npPod, _ probe) bool { return from.is("y/b") })),
		one("x/a admits pod b of x or namespace y (two peers: OR)", fixed(ingressXA("b-or-y",
			rule{peers: peers(pods(sel("pod", "b")), namespaces(sel("ns", "y")))})),
			toXA(func(from *npPod, _ probe) bool { return from.is("x/b") || from.ns == "y" })),
		one("x/a admits pods b and c of x (In)", fixed(ingressXA("b-or-c",
			rule{peers: peers(pods(selExpr("pod", metav1.LabelSelectorOpIn, "b", "c")))})),
			toXA(func(from *npPod, _ probe) bool { return from.is("x/b", "x/c") })),
		one("x/a admits every pod not labelled b, anywhere (NotIn)", fixed(ingressXA("not-b",
			rule{peers: peers(podsIn(sel(), selExpr("pod", metav1.LabelSelectorOpNotIn, "b")))})),
			toXA(func(from *npPod, _ probe) bool { return from.name != "b" })),
		one("x/a admits namespace z by its automatic name label", fixed(ingressXA("from-z",
			rule{peers: peers(namespaces(sel("kubernetes.io/metadata.name", "z")))})),
			toXA(func(from *npPod, _ probe) bool { return from.ns == "z" })),
		one("x/a admits a label no pod has: nothing", fixed(ingressXA("from-nobody",
			rule{peers: peers(podsIn(sel(), sel("pod", "nope")))})),
			toXA(func(*npPod, probe) bool { return false })),
		one("x/a admits TCP 80 from anyone", fixed(ingressXA("tcp-80", rule{ports: ports(tcpPort(80))})),
			toXA(func(_ *npPod, pr probe) bool { return is(pr, "tcp", 80) })),
		one("x/a admits TCP 81 from namespace y", fixed(ingressXA("y-tcp-81",
			rule{peers: peers(namespaces(sel("ns", "y"))), ports: ports(tcpPort(81))})),
			toXA(func(from *npPod, pr probe) bool { return from.ns == "y" && is(pr, "tcp", 81) })),
		one("x/a admits UDP 80 only", fixed(ingressXA("udp-80", rule{ports: ports(udpPort(80))})),
			toXA(func(_ *npPod, pr probe) bool { return is(pr, "udp", 80) })),
		one("x/a admits the named port serve-80-tcp", fixed(ingressXA("named-80",
			rule{ports: ports(namedPort(corev1.ProtocolTCP, "serve-80-tcp"))})),
			toXA(func(_ *npPod, pr probe) bool { return is(pr, "tcp", 80) })),
		one("x/a admits the named port serve-81-udp", fixed(ingressXA("named-81-udp",
			rule{ports: ports(namedPort(corev1.ProtocolUDP, "serve-81-udp"))})),
			toXA(func(_ *npPod, pr probe) bool { return is(pr, "udp", 81) })),
		one("a named port no container has admits nothing", fixed(ingressXA("named-missing",
			rule{ports: ports(namedPort(corev1.ProtocolTCP, "serve-99-tcp"))})),
			toXA(func(*npPod, probe) bool { return false })),
		one("a named port of another protocol admits nothing", fixed(ingressXA("named-wrong-proto",
			rule{ports: ports(namedPort(corev1.ProtocolTCP, "serve-80-udp"))})),
			toXA(func(*npPod, probe) bool { return false })),
		one("x/a admits TCP 80-81 (endPort)", fixed(ingressXA("tcp-80-81", rule{ports: ports(tcpPort(80, 81))})),
			toXA(func(_ *npPod, pr probe) bool { return pr.proto == "tcp" })),
		one("x/a admits TCP 81-90 (endPort)", fixed(ingressXA("tcp-81-90", rule{ports: ports(tcpPort(81, 90))})),
			toXA(func(_ *npPod, pr probe) bool { return is(pr, "tcp", 81) })),
		one("two policies on x/a add up", fixed(
			ingressXA("y-80", rule{peers: peers(namespaces(sel("ns", "y"))), ports: ports(tcpPort(80))}),
			ingressXA("z-81", rule{peers: peers(namespaces(sel("ns", "z"))), ports: ports(tcpPort(81))})),
			toXA(func(from *npPod, pr probe) bool {
				return from.ns == "y" && is(pr, "tcp", 80) || from.ns == "z" && is(pr, "tcp", 81)
			})),
		one("two rules of one policy add up", fixed(ingressXA("two-rules",
			rule{peers: peers(namespaces(sel("ns", "y"))), ports: ports(tcpPort(80))},
			rule{peers: peers(namespaces(sel("ns", "z"))), ports: ports(tcpPort(81))})),
			toXA(func(from *npPod, pr probe) bool {
				return from.ns == "y" && is(pr, "tcp", 80) || from.ns == "z" && is(pr, "tcp", 81)
			})),
		one("x/a admits one node's IPv4 pod range (ipBlock)", func(l *npLab) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{ingressXA("node2-range", rule{peers: peers(cidr(l.by["x/b"].node.PodCIDRs[0].String()))})}
		}, func(from, to *npPod, pr probe) bool {
			return !to.is("x/a") || !pr.v6 && from.node.Name == "node2"
		}),
		one("x/a admits 10.244.0.0/16 except one node's range", func(l *npLab) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{ingressXA("except-node2",
				rule{peers: peers(cidr("10.244.0.0/16", l.by["x/b"].node.PodCIDRs[0].String()))})}
		}, func(from, to *npPod, pr probe) bool {
			return !to.is("x/a") || !pr.v6 && from.node.Name != "node2"
		}),
		one("x/a admits one pod's addresses (/32 and /128 ipBlocks)", func(l *npLab) []*networkingv1.NetworkPolicy {
			yb := l.by["y/b"]
			return []*networkingv1.NetworkPolicy{ingressXA("y-b-addresses",
				rule{peers: peers(cidr(hostPrefix(yb.addr(false))), cidr(hostPrefix(yb.addr(true))))})}
		}, toXA(func(from *npPod, _ probe) bool { return from.is("y/b") })),
		one("x/a admits IPv6 pod addresses only (ipBlock)", fixed(ingressXA("v6-only",
			rule{peers: peers(cidr("fd00:10:244::/48"))})),
			toXA(func(_ *npPod, pr probe) bool { return pr.v6 })),
		one("x/a may only call namespace y", fixed(egressXA("to-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
			fromXA(func(to *npPod, _ probe) bool { return to.ns == "y" })),
		one("x/a may only call TCP 80", fixed(egressXA("to-80", rule{ports: ports(tcpPort(80))})),
			fromXA(func(_ *npPod, pr probe) bool { return is(pr, "tcp", 80) })),
		one("x/a may call the named port serve-81-tcp (resolved on each destination)", fixed(egressXA("to-named-81",
			rule{ports: ports(namedPort(corev1.ProtocolTCP, "serve-81-tcp"))})),
			fromXA(func(_ *npPod, pr probe) bool { return is(pr, "tcp", 81) })),
		one("x/a may call 10.244.0.0/16 except y/b (ipBlock egress)", func(l *npLab) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{egressXA("cidr-except",
				rule{peers: peers(cidr("10.244.0.0/16", hostPrefix(l.by["y/b"].addr(false))))})}
		}, fromXA(func(to *npPod, pr probe) bool { return !pr.v6 && !to.is("y/b") })),
		one("x/a may only call pod b of namespace z", fixed(egressXA("to-z-b",
			rule{peers: peers(podsIn(sel("ns", "z"), sel("pod", "b")))})),
			fromXA(func(to *npPod, _ probe) bool { return to.is("z/b") })),
		one("x/a may only call UDP 81 in namespace z", fixed(egressXA("z-udp-81",
			rule{peers: peers(namespaces(sel("ns", "z"))), ports: ports(udpPort(81))})),
			fromXA(func(to *npPod, pr probe) bool { return to.ns == "z" && is(pr, "udp", 81) })),
		one("x/a may call no one but still answers (replies are allowed)", fixed(denyEgress("x", sel("pod", "a"))),
			fromXA(func(*npPod, probe) bool { return false })),
		one("a connection needs the source's egress and the destination's ingress", fixed(
			ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))}),
			denyEgress("y", sel("pod", "b"))),
			func(from, to *npPod, pr probe) bool {
				if from.is("y/b") {
					return false
				}
				return !to.is("x/a") || from.ns == "y"
			}),
		one("policyTypes Ingress and Egress with ingress rules only: egress denied", fixed(
			policyOf("x", "both-types", sel("pod", "a"), bothTypes, []rule{{peers: peers(namespaces(sel("ns", "y")))}}, nil)),
			func(from, to *npPod, pr probe) bool {
				return !from.is("x/a") && (!to.is("x/a") || from.ns == "y")
			}),
		one("policyTypes Egress ignores ingress rules", fixed(
			policyOf("x", "egress-type", sel("pod", "a"), onlyEgress, []rule{{peers: peers(namespaces(sel("ns", "y")))}}, nil)),
			fromXA(func(*npPod, probe) bool { return false })),
		one("namespace x admits only itself", fixed(policyOf("x", "only-x", sel(), onlyIngress, []rule{{peers: peers(pods(sel()))}}, nil)),
			func(from, to *npPod, pr probe) bool { return to.ns != "x" || from.ns == "x" }),
		one("x admits every namespace (empty namespaceSelector)", fixed(
			policyOf("x", "all-namespaces", sel(), onlyIngress, []rule{{peers: peers(namespaces(sel()))}}, nil)), everything),
		one("a policy in y does not touch x", fixed(denyIngress("y", sel("pod", "a"))),
			func(from, to *npPod, pr probe) bool { return !to.is("y/a") }),
		one("default deny everywhere", fixed(denyBoth("x"), denyBoth("y"), denyBoth("z")),
			func(*npPod, *npPod, probe) bool { return false }),
		one("x/a admits 0.0.0.0/0 except 200 ranges outside the cluster (a large ipBlock)", func(*npLab) []*networkingv1.NetworkPolicy {
			var except []string
			for i := range 200 {
				except = append(except, fmt.Sprintf("198.%d.%d.0/24", 18+i/100, i%100))
			}
			return []*networkingv1.NetworkPolicy{ingressXA("large-block", rule{peers: peers(cidr("0.0.0.0/0", except...))})}
		}, toXA(func(_ *npPod, pr probe) bool { return !pr.v6 })),
		{"a policy update takes the new rule", []npStep{
			{policies: fixed(ingressXA("from-ns", rule{peers: peers(namespaces(sel("ns", "y")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })},
			{policies: fixed(ingressXA("from-ns", rule{peers: peers(namespaces(sel("ns", "z")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.ns == "z" })},
		}},
		{"deleting one of two policies leaves the other", []npStep{
			{policies: fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))}),
				ingressXA("from-z", rule{peers: peers(namespaces(sel("ns", "z")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.ns != "x" })},
			{policies: fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })},
		}},
		{"a source pod losing its label loses access", []npStep{
			{policies: fixed(ingressXA("from-b", rule{peers: peers(pods(sel("pod", "b")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.is("x/b") })},
			{policies: fixed(ingressXA("from-b", rule{peers: peers(pods(sel("pod", "b")))})),
				labels: map[string]map[string]string{"x/b": {"pod": "bb"}},
				expect: toXA(func(*npPod, probe) bool { return false })},
		}},
		{"a namespace losing its label loses access", []npStep{
			{policies: fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
				expect: toXA(func(from *npPod, _ probe) bool { return from.ns == "y" })},
			{policies: fixed(ingressXA("from-y", rule{peers: peers(namespaces(sel("ns", "y")))})),
				labels: map[string]map[string]string{"y": {"ns": "yy"}},
				expect: toXA(func(*npPod, probe) bool { return false })},
		}},
		{"a pod relabelled out of a policy's selector is no longer isolated", []npStep{
			{policies: fixed(denyIngress("x", sel("pod", "a"))), expect: toXA(func(*npPod, probe) bool { return false })},
			{policies: fixed(denyIngress("x", sel("pod", "a"))), labels: map[string]map[string]string{"x/a": {"pod": "aa"}},
				expect: everything},
		}},
		{"deleting every policy restores full reachability", []npStep{
			{policies: fixed(denyBoth("x"), denyBoth("y"), denyBoth("z")), expect: func(*npPod, *npPod, probe) bool { return false }},
			{policies: fixed(), expect: everything},
		}},
	}
}

// TestNetworkPolicy runs the truth table in one lab: 3 nodes with real
// agents under a real API server, 9 pods attached by weft-cni, every case's
// full 9x9 matrix for TCP 80, TCP 81, UDP 80, UDP 81 (IPv4) and TCP 80
// (IPv6), probed 1 s after the last API write of the case.
func TestNetworkPolicy(t *testing.T) {
	l := newNPLab(t)
	cases := append(npCases(), cnpCases()...)
	t.Logf("%d cases, %d cells each", len(cases), len(l.pods)*len(l.pods)*len(npProbes))
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			relabelled := false
			for i, s := range c.steps {
				l.syncPolicies(s.policies(l))
				var cnps []*cnp.ClusterNetworkPolicy
				if s.cluster != nil {
					cnps = s.cluster(l)
				}
				l.syncClusterPolicies(cnps)
				for target, labels := range s.labels {
					l.setLabels(target, labels)
					relabelled = true
				}
				time.Sleep(time.Second) // a change takes effect within 1 s
				wrong, got := l.probeMatrix(s.expect)
				if len(wrong) > 0 {
					shown := map[probe]bool{}
					var b strings.Builder
					for _, w := range wrong {
						if !shown[w.pr] {
							shown[w.pr] = true
							b.WriteString(l.render(w.pr, s.expect, got))
						}
					}
					t.Errorf("step %d: %d of %d cells wrong:\n%s", i+1, len(wrong), len(got), b.String())
				}
			}
			if relabelled {
				l.restoreLabels()
			}
		})
	}
	l.syncPolicies(nil)
	l.syncClusterPolicies(nil)
	for _, sub := range []struct {
		name string
		run  func(*testing.T, *npLab)
	}{
		{"established connections survive a policy change", testEstablished},
		{"a new pod under deny-all is never reachable", testNewPodFailsClosed},
		{"the pod's own node always passes", testOwnNode},
		{"policy drops are counted", testDropsCounted},
		{"ADD of a pod the API does not have is refused", testUnknownPod},
		{"a pod deleted from the API loses its network", testDeletedPod},
		{"enforcement survives an agent restart", testAgentRestart},
		{"an nftables failure is reported and retried", testNftablesFailure},
	} {
		t.Run(strings.ReplaceAll(sub.name, " ", "_"), func(t *testing.T) { sub.run(t, l) })
	}
}

// restoreLabels puts back pod=<name> and ns=<name>.
func (l *npLab) restoreLabels() {
	for _, p := range l.pods {
		l.setLabels(p.key(), map[string]string{"pod": p.name})
	}
	for _, ns := range npNamespaces {
		l.setLabels(ns, map[string]string{"ns": ns})
	}
}
