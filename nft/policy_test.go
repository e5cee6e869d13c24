package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/policy"
)

// The enforcer's diffing is pure logic over nftables objects, so it is
// tested against knftables' fake; the lab's truth table proves the rules on
// the real kernel.

func desired(pods ...policy.PodPolicy) policy.Desired {
	d := policy.Desired{LocalCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	for _, p := range pods {
		d.Known = append(d.Known, p.IPs...)
	}
	d.Pods = pods
	return d
}

func isolated(ip string, peers ...string) policy.PodPolicy {
	a := policy.Allow{Key: "x/p/ingress/0", Ports: []policy.PortRange{{Protocol: corev1.ProtocolTCP, From: 80, To: 80}}}
	for _, p := range peers {
		a.Peers = append(a.Peers, netip.MustParsePrefix(p))
	}
	return policy.PodPolicy{IPs: []netip.Addr{netip.MustParseAddr(ip)}, IngressIsolated: true, Ingress: []policy.Allow{a}}
}

func apply(t *testing.T, fake *knftables.Fake, e *Enforcer, d policy.Desired) (int, string) {
	t.Helper()
	n, err := e.Apply(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return 0, ""
	}
	return n, fake.LastTransaction.String()
}

// onlyLines fails unless every line of tx starts with one of prefixes.
func onlyLines(t *testing.T, what, tx string, prefixes ...string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(tx), "\n") {
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(line, p)
		}
		if !ok {
			t.Errorf("%s: unexpected operation %q in\n%s", what, line, tx)
		}
	}
}

func TestEnforcerChangesOnlyWhatChanged(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	e, _ := NewEnforcer(fake)

	_, tx := apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.2.7/32")))
	if !strings.Contains(tx, "ip saddr @np-p-") || !strings.Contains(tx, "meta l4proto tcp th dport 80 accept") {
		t.Fatalf("first apply has no peer rule:\n%s", tx)
	}
	if n, _ := apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.2.7/32"))); n != 0 {
		t.Errorf("the same state again: %d operations, want 0", n)
	}

	// A new peer pod: one set element, no rule.
	_, tx = apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.2.7/32", "10.244.3.9/32")))
	onlyLines(t, "new peer", tx, "add element inet weft np-p-")
	if !strings.Contains(tx, "10.244.3.9/32") {
		t.Errorf("new peer: element missing:\n%s", tx)
	}

	// A second local pod with the same policy: it shares the chain, so only
	// its address is added to the known set and the ingress map.
	_, tx = apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.2.7/32", "10.244.3.9/32"),
		isolated("10.244.1.6", "10.244.2.7/32", "10.244.3.9/32")))
	onlyLines(t, "second pod", tx, "add element inet weft np-known-v4", "add element inet weft np-ingress-v4")

	// A peer leaves: one element deleted.
	_, tx = apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.3.9/32"), isolated("10.244.1.6", "10.244.3.9/32")))
	onlyLines(t, "peer leaves", tx, "delete element inet weft np-p-")

	// One pod's rules change: a new chain, its map element swapped; the old
	// chain stays for the other pod.
	other := isolated("10.244.1.6", "10.244.3.9/32")
	other.Ingress[0].Ports = []policy.PortRange{{Protocol: corev1.ProtocolUDP, From: 53, To: 53}}
	_, tx = apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.3.9/32"), other))
	onlyLines(t, "policy change", tx, "add chain inet weft np-in-", "flush chain inet weft np-in-", "add rule inet weft np-in-",
		"delete element inet weft np-ingress-v4", "add element inet weft np-ingress-v4")

	// Everything goes: chains and sets are deleted, the forward chain stays.
	_, tx = apply(t, fake, e, desired())
	if !strings.Contains(tx, "delete chain inet weft np-in-") || !strings.Contains(tx, "delete set inet weft np-p-") {
		t.Errorf("removing every policy left chains or sets:\n%s", tx)
	}
	rules, err := fake.ListRules(context.Background(), ForwardChain)
	if err != nil || len(rules) == 0 {
		t.Errorf("forward chain: %v rules, err %v", len(rules), err)
	}
}

// A restarted agent rewrites in one transaction and deletes what the
// previous run left that is no longer wanted.
func TestEnforcerRewritesAfterRestart(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	e, _ := NewEnforcer(fake)
	apply(t, fake, e, desired(isolated("10.244.1.5", "10.244.2.7/32")))
	e2, _ := NewEnforcer(fake)
	_, tx := apply(t, fake, e2, desired())
	if !strings.Contains(tx, "delete chain inet weft np-in-") || !strings.Contains(tx, "delete set inet weft np-p-") {
		t.Errorf("restart with no policy kept the old objects:\n%s", tx)
	}
	chains, _ := fake.List(context.Background(), "chains")
	for _, c := range chains {
		if strings.HasPrefix(c, ingressPrefix) {
			t.Errorf("chain %s survived", c)
		}
	}
}

// ClusterNetworkPolicy's Admin tier is a chain in precedence order (not
// sorted like NetworkPolicy's union): Pass and the tier's end go to the
// NetworkPolicy chain of an isolated pod, or to the Baseline tier's chain.
func TestTierChains(t *testing.T) {
	p := isolated("10.244.1.5", "10.244.2.0/24")
	y := policy.Allow{Key: "cnp:p/ingress/0", Peers: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}}
	p.AdminIngress = []policy.Rule{{Allow: y, Action: policy.Pass}, {Allow: policy.Allow{Key: "cnp:p/ingress/1", AnyPeer: true}, Action: policy.Deny}}
	s := renderState(desired(p))
	var admin, np string
	for name := range s.chains {
		switch {
		case strings.HasPrefix(name, adminInPrefix):
			admin = name
		case strings.HasPrefix(name, ingressPrefix):
			np = name
		}
	}
	if admin == "" || np == "" {
		t.Fatalf("chains: %v", s.chains)
	}
	if got := s.maps["np-ingress-v4"]["10.244.1.5"]; got != "jump "+admin {
		t.Errorf("the pod's ingress goes to %q; want the admin chain %s", got, admin)
	}
	want := []string{
		"ip saddr @" + hashName(peerSetPrefix, y.Key) + "-v4 goto " + np,
		"ip6 saddr @" + hashName(peerSetPrefix, y.Key) + "-v6 goto " + np,
		"meta nfproto ipv4 counter name \"policy-drops\" drop",
		"meta nfproto ipv6 counter name \"policy-drops\" drop",
		"goto " + np,
	}
	if strings.Join(s.chains[admin], "\n") != strings.Join(want, "\n") {
		t.Errorf("admin chain:\n%s\nwant\n%s", strings.Join(s.chains[admin], "\n"), strings.Join(want, "\n"))
	}
}
