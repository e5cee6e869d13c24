package policy

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bigCluster: 5000 pods in 50 namespaces, 100 policies each selecting an
// app and admitting two other apps (one by namespace) on a named port, and
// 100 local pods.
func bigCluster() (Cluster, []Pod) {
	c := Cluster{Namespaces: map[string]map[string]string{}}
	for i := range 5000 {
		ns := fmt.Sprintf("ns%d", i%50)
		c.Namespaces[ns] = map[string]string{"team": fmt.Sprintf("t%d", i%50%10)}
		c.Pods = append(c.Pods, Pod{Namespace: ns, Name: fmt.Sprintf("p%d", i),
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%100)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Ports:  []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}})
	}
	for i := range 100 {
		c.Policies = append(c.Policies, networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("pol%d", i)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i)}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+1)%100)}}},
						{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "t3"}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}}},
				}},
			}})
	}
	return c, c.Pods[:100]
}

func TestCompileLargeCluster(t *testing.T) {
	c, local := bigCluster()
	pps, errs := Compile(c, local)
	if len(errs) > 0 || len(pps) != 100 {
		t.Fatalf("%d policies, %v", len(pps), errs)
	}
	// Pod p0 (app0, ns0) is selected by pol0, which admits app1 in ns0 (50
	// pods of app1 live in ns1..., none in ns0) and every pod of team t3's
	// namespaces (ns3, ns13, ... : 5 namespaces of 100 pods).
	p := pps[0]
	if !p.IngressIsolated || len(p.Ingress) != 1 {
		t.Fatalf("p0: %+v", p)
	}
	if n := len(p.Ingress[0].Peers); n != 500 {
		t.Errorf("p0 admits %d addresses, want 500 (team t3) + 0 (app1 is not in ns0)", n)
	}
}

func BenchmarkCompile5000Pods100Policies(b *testing.B) {
	c, local := bigCluster()
	b.ReportAllocs()
	for b.Loop() {
		Compile(c, local)
	}
}
