package netpol

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weftnet/weft/api"
)

// These unit tests cover the controller's view of the cluster (which pods
// are local, which addresses count) with client-go's fake clientset; the
// lab's truth table is the proof that policies are enforced.

func podOn(ns, name, node string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func testNetPol(t *testing.T, objs ...any) *Controller {
	t.Helper()
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	pods, nss, nps := f.Core().V1().Pods(), f.Core().V1().Namespaces(), f.Networking().V1().NetworkPolicies()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			err = pods.Informer().GetStore().Add(o)
		case *corev1.Namespace:
			err = nss.Informer().GetStore().Add(o)
		case *networkingv1.NetworkPolicy:
			err = nps.Informer().GetStore().Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	n := &Controller{node: "node1", stateDir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		local: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, own: []netip.Addr{netip.MustParseAddr("10.244.1.1")},
		pods: pods.Lister(), nss: nss.Lister(), nps: nps.Lister(), atts: map[string]attachment{}, extra: map[string]extraPod{}}
	n.changed = sync.NewCond(&n.mu)
	return n
}

func (n *Controller) addAttachment(t *testing.T, id, ns, name string, ips ...string) {
	t.Helper()
	a := attachment{Attachment: api.Attachment{ContainerID: id, IfName: "eth0", Namespace: ns, Name: name, IPs: ips}}
	if err := n.validate(&a); err != nil {
		t.Fatal(err)
	}
	n.atts[a.key()] = a
}

func known(t *testing.T, n *Controller) []string {
	t.Helper()
	d, _, errs := n.desired()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var out []string
	for _, a := range d.Known {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return slices.Compact(out) // the data plane's sets hold each address once
}

func TestNetPolLocalAddresses(t *testing.T) {
	denyAll := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	stale := podOn("x", "old", "node1", "10.244.1.5") // finished pod's status still shows the address
	stale.Status.Phase = corev1.PodSucceeded
	hostNet := podOn("x", "host", "node1", "10.99.0.11")
	hostNet.Spec.HostNetwork = true
	n := testNetPol(t, denyAll, stale, hostNet,
		podOn("x", "a", "node1", "10.244.1.2"),
		podOn("x", "b", "node1", "10.244.1.3"),    // status says .3, but .3 now belongs to x/c's attachment
		podOn("x", "c", "node1"),                  // no status yet: known from its attachment
		podOn("x", "evil", "node2", "10.244.1.9"), // another node's pod claiming this node's range
		podOn("x", "far", "node2", "10.244.2.7"),
	)
	n.addAttachment(t, "c1", "x", "c", "10.244.1.3")
	got := known(t, n)
	want := []string{"10.244.1.1", "10.244.1.2", "10.244.1.3"}
	if !slices.Equal(got, want) {
		t.Fatalf("known addresses %v, want %v", got, want)
	}
	d, local, _ := n.desired()
	if local != 2 { // x/a from status, x/c from its attachment; x/b's status address is taken
		t.Errorf("%d local pods, want 2", local)
	}
	for _, p := range d.Pods {
		if !p.IngressIsolated {
			t.Errorf("%s/%s not isolated under deny-all", p.Namespace, p.Name)
		}
	}
}

func TestNetPolForgetsAttachmentsOfGonePods(t *testing.T) {
	n := testNetPol(t, podOn("x", "a", "node1"))
	n.addAttachment(t, "a1", "x", "a", "10.244.1.2")
	n.addAttachment(t, "g1", "x", "gone", "10.244.1.4")
	n.addAttachment(t, "u1", "", "", "10.244.1.6") // not a Kubernetes pod: known, no policy
	d, _, _ := n.desired()
	isolated := map[string]bool{}
	for _, p := range d.Pods {
		isolated[fmt.Sprint(p.IPs)] = p.IngressIsolated && p.EgressIsolated
	}
	if !isolated["[10.244.1.4]"] {
		t.Errorf("the gone pod's address is not isolated both ways: %v", d.Pods)
	}
	if _, ok := n.atts["g1/eth0"]; ok {
		t.Error("the gone pod's attachment was kept")
	}
	if got, want := known(t, n), []string{"10.244.1.1", "10.244.1.2", "10.244.1.6"}; !slices.Equal(got, want) {
		t.Errorf("next sync knows %v, want %v", got, want)
	}
}

func TestNetPolValidatesAttachments(t *testing.T) {
	n := testNetPol(t)
	for _, a := range []api.Attachment{
		{ContainerID: "c", IfName: "eth0", IPs: []string{"10.244.2.5"}},                 // another node's range
		{ContainerID: "c", IfName: "eth0", IPs: []string{"10.244.1.1"}},                 // the node's own address
		{ContainerID: "c", IfName: "eth0", Namespace: "x", IPs: []string{"10.244.1.5"}}, // namespace without name
		{ContainerID: "c", IfName: "eth0", Namespace: "X_", Name: "a", IPs: []string{"10.244.1.5"}},
		{ContainerID: "", IfName: "eth0", IPs: []string{"10.244.1.5"}},
		{ContainerID: "c", IfName: "eth0", IPs: []string{"10.244.1.5", "10.244.1.6", "10.244.1.7"}},
		{ContainerID: "c", IfName: "eth0", IPs: []string{"not-an-ip"}},
	} {
		at := attachment{Attachment: a}
		if err := n.validate(&at); err == nil {
			t.Errorf("attachment %+v accepted", a)
		}
	}
}
