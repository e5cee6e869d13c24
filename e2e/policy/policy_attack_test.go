package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestHostilePolicyDoesNotStallTheNode: a tenant's NetworkPolicy with 2000
// single-address exceptions under ::/0 (about 230 000 prefixes to carve:
// 55 s and 232 k set elements on the main branch before the fix, during
// which every pod ADD on the node failed) leaves the node working: a new
// pod's ADD succeeds at once, the rule admits nothing (the selected pod
// stays isolated) and the agent reports the policy.
func TestHostilePolicyDoesNotStallTheNode(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	for _, n := range k.Lab.Nodes() {
		k.WaitCNIConf(n)
	}
	n1, n2 := k.Lab.Nodes()[0], k.Lab.Nodes()[1]
	ctx := context.Background()
	const ns, other = "tenant", "other"
	k.CreateNamespace(ns, nil)
	k.CreateNamespace(other, nil)
	var holes []string
	for i := range 2000 {
		holes = append(holes, fmt.Sprintf("2001:db8::%x:%x/128", i, i*7919%65536))
	}
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "swiss-cheese"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: holes}}}}},
		}}
	if _, err := k.Cp.Admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addPod := func(ns, name string, n *netlab.Node) (*netlab.Pod, time.Duration) {
		obj, err := k.Cp.Admin.CoreV1().Pods(ns).Create(ctx, labtest.NpPodObject(ns, name, n.Name), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		p, err := n.AddKubePod(actx, k.Bins, ns, name)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("ADD of %s on %s after the hostile policy: %v (after %v)", name, n.Name, err, took)
		}
		if err := k.SetRunning(obj, p); err != nil {
			t.Fatal(err)
		}
		serve(t, p)
		return p, took
	}
	victim, took := addPod(ns, "victim", n1)
	t.Logf("pod ADD on node1 with the hostile policy in force took %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("pod ADD took %v; want the node unaffected", took)
	}
	open, _ := addPod(other, "open", n1)
	client, _ := addPod(other, "client", n2)
	tcp := probe{proto: "tcp", port: 80}
	// The network works (a pod no policy selects answers) ...
	if !connect(client.Do, tcp, open.Addr(true), 3*time.Second) {
		t.Fatal("the client cannot reach an unisolated pod on node1")
	}
	// ... and the refused rule admits nothing: the victim stays isolated.
	for _, v6 := range []bool{true, false} {
		if connect(client.Do, tcp, victim.Addr(v6), time.Second) {
			t.Errorf("the client reached the isolated victim at %s: the refused rule admitted traffic", victim.Addr(v6))
		}
	}
	labtest.Eventually(t, 10*time.Second, "node1 reports the refused policy", func() bool {
		out := k.Agents[n1.Name].Output()
		return strings.Contains(out, "swiss-cheese") && strings.Contains(out, "admits nothing")
	})
	// The integrity check (every 10 s) found weft's own policy objects as
	// written: it rewrote nothing.
	time.Sleep(11 * time.Second)
	for _, n := range k.Lab.Nodes() {
		if got := k.Metric(n, "weft_nftables_reasserts_total"); got != 0 {
			t.Errorf("%s rewrote its nftables objects %v times with nobody touching them", n.Name, got)
		}
	}
}
