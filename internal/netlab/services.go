package netlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// systemIdentities are the ServiceAccounts of the lab's kube-proxy and
// CoreDNS, with the roles a real cluster gives them (kube-proxy's
// system:node-proxier is built into the API server; CoreDNS's is the one its
// own manifests ship).
const systemIdentities = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-proxy, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: lab:kube-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-proxier}
subjects: [{kind: ServiceAccount, name: kube-proxy, namespace: kube-system}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: lab:coredns}
rules:
  - {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: lab:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lab:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
`

// ClusterDNS is the kube-dns Service's address.
const ClusterDNS = "10.96.0.10"

// ClusterCIDRs are the lab's pod ranges (every node's PodCIDRs lie inside),
// as kube-proxy's and weft-agent's --cluster-cidr.
const ClusterCIDRs = "10.244.0.0/16,fd00:10:244::/48"

// ExternalCIDRs are the ranges the lab's agents open to Peer objects
// (--external-cidr).
const ExternalCIDRs = "10.200.0.0/16,fd00:200::/48"

// StartKubeProxy runs the real kube-proxy in nftables mode on n, as the
// kube-proxy ServiceAccount.
func (cp *ControlPlane) StartKubeProxy(ctx context.Context, n *Node) (*Proc, error) {
	if err := cp.Apply(ctx, []byte(systemIdentities), false); err != nil {
		return nil, err
	}
	kc := filepath.Join(n.Dir, "kube-proxy.kubeconfig")
	if err := cp.Kubeconfig(ctx, "kube-system", "kube-proxy", kc); err != nil {
		return nil, err
	}
	return n.Start(filepath.Join(cp.binDir, "kube-proxy"), "--kubeconfig", kc, "--hostname-override", n.Name,
		"--proxy-mode", "nftables", "--cluster-cidr", ClusterCIDRs, "--conntrack-max-per-core", "0",
		"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256")
}

// StartCoreDNS runs the real CoreDNS as a pod on n (attached by the node's
// CNI config), serving cluster.local from the API server, behind a kube-dns
// Service at ClusterDNS whose EndpointSlice the harness writes.
func (cp *ControlPlane) StartCoreDNS(ctx context.Context, n *Node, cniBins string) (*Pod, error) {
	if err := cp.Apply(ctx, []byte(systemIdentities), false); err != nil {
		return nil, err
	}
	pod, err := n.AddPod(ctx, cniBins, "coredns")
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(n.Dir, "coredns.kubeconfig")
	if err := cp.Kubeconfig(ctx, "kube-system", "coredns", kc); err != nil {
		return nil, err
	}
	corefile := filepath.Join(n.Dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(fmt.Sprintf(`.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s lab
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, kc)), 0o600); err != nil {
		return nil, err
	}
	if _, err := pod.Start(filepath.Join(cp.binDir, "coredns"), "-conf", corefile); err != nil {
		return nil, err
	}
	dns := corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)}
	dnsTCP := corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)}
	if _, err := cp.CreateService(ctx, "kube-system", "kube-dns", corev1.ServiceTypeClusterIP, ClusterDNS, []corev1.ServicePort{dns, dnsTCP}, []*Pod{pod}); err != nil {
		return nil, err
	}
	return pod, nil
}

// CreateService creates a Service (clusterIP "" lets the API server pick)
// and the EndpointSlice a controller would write for the given backends.
func (cp *ControlPlane) CreateService(ctx context.Context, ns, name string, typ corev1.ServiceType, clusterIP string, ports []corev1.ServicePort, backends []*Pod) (*corev1.Service, error) {
	svc, err := cp.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP, Ports: ports},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-lab", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range ports {
		port, proto, pname := p.TargetPort.IntVal, p.Protocol, p.Name
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &pname, Port: &port, Protocol: &proto})
	}
	for _, b := range backends {
		node := b.Node.Name
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{b.Addr(false).String()}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	if _, err := cp.Admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("endpointslice %s/%s: %w", ns, name, err)
	}
	return svc, nil
}

// WaitKubeProxy waits until kube-proxy on n has programmed the Service
// address into its nftables table.
func (n *Node) WaitKubeProxy(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, _ := n.Run(ctx, "nft", "list", "table", "ip", "kube-proxy")
		if strings.Contains(out, addr) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-proxy on %s has not programmed %s after %v", n.Name, addr, timeout)
}
