package labtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/deploy"
	"github.com/weftnet/weft/internal/netlab"
)

// KubeCluster is a lab with a real kube-apiserver; agents run in Kubernetes
// mode as the weft ServiceAccount under the shipped RBAC.
type KubeCluster struct {
	*Cluster
	Cp *netlab.ControlPlane
}

func NewKubeCluster(t testing.TB, nodes int) *KubeCluster {
	t.Helper()
	c := NewCluster(t, 0)
	cpBins, err := netlab.ControlPlaneBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cp, err := c.Lab.StartControlPlane(ctx, cpBins)
	if err != nil {
		t.Fatal(err)
	}
	// The whole shipped manifest: its RBAC is what the agents run under (its
	// DaemonSet and Job never start: the lab has no kubelet or controllers).
	if err := cp.Apply(ctx, deploy.Manifest, false); err != nil {
		t.Fatalf("apply deploy/weft.yaml: %v", err)
	}
	// ClusterNetworkPolicy's CRD, served before any agent starts (an agent
	// that finds it at start enforces it from its first sync).
	if err := cp.Apply(ctx, deploy.ClusterNetworkPolicyCRD, false); err != nil {
		t.Fatalf("apply the ClusterNetworkPolicy CRD: %v", err)
	}
	Eventually(t, 30*time.Second, "the API server serves ClusterNetworkPolicy", func() bool {
		res, err := cp.Admin.Discovery().ServerResourcesForGroupVersion("policy.networking.k8s.io/v1beta1")
		return err == nil && len(res.APIResources) > 0
	})
	k := &KubeCluster{Cluster: c, Cp: cp}
	for i := 1; i <= nodes; i++ {
		k.AddNode()
	}
	return k
}

// AddNode creates a node namespace and registers its Node object.
func (k *KubeCluster) AddNode() *netlab.Node {
	k.T.Helper()
	n, err := k.Lab.AddNode(fmt.Sprintf("node%d", len(k.Lab.Nodes())+1))
	if err != nil {
		k.T.Fatal(err)
	}
	if _, err := k.Cp.RegisterNode(context.Background(), n); err != nil {
		k.T.Fatal(err)
	}
	return n
}

// StartKube starts n's agent in Kubernetes mode: no --pod-cidr, no
// --advertise-address, no --join; all of it comes from the API.
// Extra environment (NAME=value) is passed through env(1).
func (k *KubeCluster) StartKube(n *netlab.Node, env ...string) *netlab.Proc {
	k.T.Helper()
	return k.StartKubeWith(n, env)
}

// StartKubeWith is startKube with extra agent flags.
func (k *KubeCluster) StartKubeWith(n *netlab.Node, env []string, extra ...string) *netlab.Proc {
	k.T.Helper()
	kc := filepath.Join(n.Dir, "kubeconfig")
	if _, err := os.Stat(kc); err != nil { // a restarted agent keeps its token
		if err := k.Cp.NodeKubeconfig(context.Background(), "weft-system", "weft", n.Name, kc); err != nil {
			k.T.Fatal(err)
		}
	}
	args := []string{filepath.Join(k.Bins, "weft-agent"),
		"--kubeconfig", kc, "--node-name", n.Name, "--gossip-key-file", k.GossipKey,
		"--state-dir", n.StateDir, "--cni-conf-dir", n.CNIConfDir, "--http-addr", netlab.AgentHTTP,
		"--cluster-cidr", netlab.ClusterCIDRs, "--external-cidr", netlab.ExternalCIDRs}
	args = append(args, extra...)
	if os.Getenv("WEFT_LAB_DEBUG") == "1" {
		args = append(args, "--log-level", "debug")
	}
	if len(env) > 0 {
		args = append(env, args...)
		args = append([]string{"env"}, args...)
	}
	p, err := n.Start(args[0], args[1:]...)
	if err != nil {
		k.T.Fatal(err)
	}
	k.Agents[n.Name] = p
	return p
}

// NewKubeMesh is a kube cluster whose agents run and have formed the mesh.
func NewKubeMesh(t testing.TB, nodes int) *KubeCluster {
	t.Helper()
	k := NewKubeCluster(t, nodes)
	for _, n := range k.Lab.Nodes() {
		k.StartKube(n)
	}
	k.WaitMesh(30 * time.Second)
	return k
}

// StopAPIServer stops the API server once n's agent has seen it up, and
// waits until that agent notices it is gone.
func (k *KubeCluster) StopAPIServer(n *netlab.Node) {
	k.T.Helper()
	Eventually(k.T, 10*time.Second, n.Name+" sees the API server", func() bool {
		return strings.Contains(k.Agents[n.Name].Output(), "API server answers")
	})
	k.Cp.APIServer.Stop()
	Eventually(k.T, 10*time.Second, n.Name+" notices the API server is gone", func() bool {
		return strings.Contains(k.Agents[n.Name].Output(), "API server unreachable")
	})
}

// StartAPIServer starts the API server stopped by stopAPIServer and waits
// until it answers.
func (k *KubeCluster) StartAPIServer() {
	k.T.Helper()
	if err := k.Cp.StartAPIServer(); err != nil {
		k.T.Fatal(err)
	}
	if err := k.Cp.WaitReady(context.Background(), 60*time.Second); err != nil {
		k.T.Fatal(err)
	}
}

func (k *KubeCluster) Node(name string) *corev1.Node {
	k.T.Helper()
	n, err := k.Cp.Admin.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		k.T.Fatal(err)
	}
	return n
}

// CreateNamespace creates a namespace and its default ServiceAccount (the
// lab has no controller-manager to make it, and pod admission needs it).
func (k *KubeCluster) CreateNamespace(name string, labels map[string]string) {
	k.T.Helper()
	ctx := context.Background()
	if _, err := k.Cp.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		k.T.Fatal(err)
	}
	if _, err := k.Cp.Admin.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		k.T.Fatal(err)
	}
}

// SetRunning publishes the sandbox's addresses in the Pod's status, as a
// kubelet would once the pod runs.
func (k *KubeCluster) SetRunning(obj *corev1.Pod, p *netlab.Pod) error {
	obj.Status.Phase = corev1.PodRunning
	obj.Status.PodIP = p.Addr(false).String()
	obj.Status.PodIPs = []corev1.PodIP{{IP: p.Addr(false).String()}, {IP: p.Addr(true).String()}}
	_, err := k.Cp.Admin.CoreV1().Pods(obj.Namespace).UpdateStatus(context.Background(), obj, metav1.UpdateOptions{})
	return err
}
