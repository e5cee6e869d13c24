package netlab

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlaneAddr is the control plane's address on the underlay.
var ControlPlaneAddr = netip.MustParseAddr("10.99.0.2")

// ControlPlane is a real etcd and kube-apiserver (RBAC on) in a namespace of
// their own on the underlay, reachable from every node at ControlPlaneAddr.
type ControlPlane struct {
	Host      *Node // the control plane's namespace
	URL       string
	CAFile    string
	Admin     kubernetes.Interface // system:masters, dialing inside the control plane
	AdminREST *rest.Config
	Etcd      *Proc
	APIServer *Proc
	binDir    string
	args      []string
}

// ControlPlaneBinaries returns the directory holding etcd and kube-apiserver
// (and kube-proxy): $WEFT_CONTROLPLANE_DIR, built by `make controlplane`.
func ControlPlaneBinaries() (string, error) {
	d := os.Getenv("WEFT_CONTROLPLANE_DIR")
	if d == "" {
		return "", errors.New("WEFT_CONTROLPLANE_DIR is not set: run the lab tests through `make test`, which builds etcd and kube-apiserver into .cache/k8s/<version>")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("control plane binary: %w (make controlplane builds it)", err)
		}
	}
	return d, nil
}

// StartControlPlane starts etcd and kube-apiserver and waits until the API
// server is ready, then applies rbac (the manifests weft ships).
func (l *Lab) StartControlPlane(ctx context.Context, binDir string) (*ControlPlane, error) {
	host, err := l.addHost("controlplane", l.ID+"-cp", ControlPlaneAddr, netip.MustParseAddr("fd99::2"))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(host.Dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p, err := newPKI(dir)
	if err != nil {
		return nil, err
	}
	crt, key, err := p.issue("apiserver", pkix.Name{CommonName: "kube-apiserver"},
		[]net.IP{net.ParseIP(ControlPlaneAddr.String()), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, false)
	if err != nil {
		return nil, err
	}
	adminCrt, adminKey, err := p.issue("admin", pkix.Name{CommonName: "lab-admin", Organization: []string{"system:masters"}}, nil, nil, true)
	if err != nil {
		return nil, err
	}
	saKey, err := p.signingKey("sa")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Host: host, URL: "https://" + net.JoinHostPort(ControlPlaneAddr.String(), "6443"), CAFile: p.CAFile, binDir: binDir}
	if cp.Etcd, err = host.Start(filepath.Join(binDir, "etcd"), "--data-dir", filepath.Join(host.Dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--log-level", "warn"); err != nil {
		return nil, err
	}
	cp.args = []string{
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "0.0.0.0", "--secure-port", "6443", "--advertise-address", ControlPlaneAddr.String(),
		"--tls-cert-file", crt, "--tls-private-key-file", key, "--client-ca-file", p.CAFile,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--authorization-mode", "RBAC", "--allow-privileged",
		"--cert-dir", filepath.Join(host.Dir, "certs"), "--profiling=false",
	}
	if err := cp.StartAPIServer(); err != nil {
		return nil, err
	}
	cp.AdminREST = &rest.Config{
		Host: cp.URL, Dial: host.Dial, Timeout: 15 * time.Second, QPS: 100, Burst: 200,
		TLSClientConfig: rest.TLSClientConfig{CAFile: p.CAFile, CertFile: adminCrt, KeyFile: adminKey},
	}
	if cp.Admin, err = kubernetes.NewForConfig(cp.AdminREST); err != nil {
		return nil, err
	}
	if err := cp.WaitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return cp, nil
}

// StartAPIServer (re)starts kube-apiserver.
func (cp *ControlPlane) StartAPIServer() error {
	var err error
	cp.APIServer, err = cp.Host.Start(filepath.Join(cp.binDir, "kube-apiserver"), cp.args...)
	return err
}

// WaitReady waits for /readyz.
func (cp *ControlPlane) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-cp.APIServer.Done():
			return fmt.Errorf("kube-apiserver exited: %v\n%s", cp.APIServer.Err(), tailString(cp.APIServer.Output(), 30))
		default:
		}
		if cp.Admin != nil {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err = cp.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").Do(rctx).Error()
			cancel()
			if err == nil {
				return nil
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %v: %v\n%s", timeout, err, tailString(cp.APIServer.Output(), 30))
}

// Apply creates every object in a multi-document YAML stream (server-side
// apply), or with dryRun only asks the API server to validate them.
func (cp *ControlPlane) Apply(ctx context.Context, manifest []byte, dryRun bool) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cp.AdminREST)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cp.AdminREST)
	if err != nil {
		return err
	}
	dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		opts := metav1.ApplyOptions{FieldManager: "weft-lab", Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Apply(ctx, obj.GetName(), &obj, opts); err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
}

// Kubeconfig writes a kubeconfig for ServiceAccount ns/name (token from the
// TokenRequest API) to path, pointing at the control plane over the underlay.
func (cp *ControlPlane) Kubeconfig(ctx context.Context, ns, name, path string) error {
	return cp.kubeconfig(ctx, ns, name, nil, path)
}

// NodeKubeconfig is Kubeconfig with the token a kubelet would project into
// a DaemonSet pod on node: bound to a Pod object on that node, so the API
// server adds the node's name to the request's user (what weft's admission
// policy checks). The Pod is created if missing; the lab has no kubelet, so
// it never runs.
func (cp *ControlPlane) NodeKubeconfig(ctx context.Context, ns, name, node, path string) error {
	podName := name + "-" + node
	pod, err := cp.Admin.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pod, err = cp.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": name}},
			Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: name, HostNetwork: true,
				Containers: []corev1.Container{{Name: "agent", Image: "weft"}}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("pod %s/%s for %s's token: %w", ns, podName, node, err)
	}
	ref := &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	return cp.kubeconfig(ctx, ns, name, ref, path)
}

func (cp *ControlPlane) kubeconfig(ctx context.Context, ns, name string, bound *authv1.BoundObjectReference, path string) error {
	exp := int64(24 * 3600)
	tr, err := cp.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp, BoundObjectRef: bound}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/%s: %w", ns, name, err)
	}
	ca, err := os.ReadFile(cp.CAFile)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: name}
	cfg.CurrentContext = "lab"
	return clientcmd.WriteToFile(*cfg, path)
}

// RegisterNode creates the Node object for n as a kubelet would: spec.podCIDRs
// and an InternalIP in status.
func (cp *ControlPlane) RegisterNode(ctx context.Context, n *Node) (*corev1.Node, error) {
	var cidrs []string
	for _, p := range n.PodCIDRs {
		cidrs = append(cidrs, p.String())
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
		Spec:       corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs},
	}
	created, err := cp.Admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = cp.Admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	created.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.Addr.String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	return cp.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
}

func tailString(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
