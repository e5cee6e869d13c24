package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync/atomic"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Pod is a sandbox: a network namespace attached by the node's CNI config
// through libcni, exactly as containerd and CRI-O attach pods.
type Pod struct {
	Node        *Node
	Name        string
	NS          string // namespace name
	Netns       string // its path, as CNI_NETNS
	ContainerID string
	IfName      string
	Result      *current.Result
}

var podSeq atomic.Int64

// CNI returns the libcni handle and config list a runtime on this node would
// use: plugins from binDir, the conflist the agent wrote in CNIConfDir.
func (n *Node) CNI(binDir string) (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	list, err := libcni.LoadNetworkConf(n.CNIConfDir, "weft")
	if err != nil {
		return nil, nil, fmt.Errorf("load CNI config on %s: %w", n.Name, err)
	}
	return libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(n.Dir, "cni-cache"), nil), list, nil
}

// NewSandbox creates an empty pod namespace with loopback up, not yet attached.
func (n *Node) NewSandbox(name string) (*Pod, error) {
	seq := podSeq.Add(1)
	p := &Pod{
		Node: n, Name: name, NS: fmt.Sprintf("%s-p%d", n.Lab.ID, seq),
		ContainerID: fmt.Sprintf("%s-%s-%d", n.Name, name, seq), IfName: "eth0",
	}
	p.Netns = "/run/netns/" + p.NS
	if err := n.Lab.addNS(p.NS); err != nil {
		return nil, err
	}
	if err := run("ip", "-n", p.NS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return p, nil
}

// RuntimeConf is what a runtime passes libcni for this pod.
func (p *Pod) RuntimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.ContainerID, NetNS: p.Netns, IfName: p.IfName}
}

// AddPod creates a sandbox and attaches it with ADD through libcni, run
// from inside the node's namespace.
func (n *Node) AddPod(ctx context.Context, binDir, name string) (*Pod, error) {
	return n.AddPodWith(ctx, binDir, name, nil)
}

// Delete runs CNI DEL through libcni and removes the namespace.
func (p *Pod) Delete(ctx context.Context, binDir string) error {
	cni, list, err := p.Node.CNI(binDir)
	if err != nil {
		return err
	}
	if err := p.Node.Do(func() error { return cni.DelNetworkList(ctx, list, p.RuntimeConf()) }); err != nil {
		return fmt.Errorf("CNI DEL %s: %w", p.Name, err)
	}
	return deleteNS(p.NS)
}

// Addr returns the pod's address of the family of want (Is4 / Is6).
func (p *Pod) Addr(v6 bool) netip.Addr {
	for _, ip := range p.Result.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		a = a.Unmap()
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// Command runs a program inside the pod's namespace.
func (p *Pod) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.NS, name}, args...)...)
}

// Ping pings dst from the pod once and reports whether a reply came.
func (p *Pod) Ping(ctx context.Context, dst netip.Addr, timeoutSec float64, extra ...string) bool {
	args := append([]string{"-n", "-q", "-c", "1", "-W", fmt.Sprintf("%.1f", timeoutSec)}, extra...)
	return p.Command(ctx, "ping", append(args, dst.String())...).Run() == nil
}

// Do runs fn on a thread inside the pod's network namespace (see Node.Do).
func (p *Pod) Do(fn func() error) error { return inNamespace(p.NS, fn) }

// Start runs a daemon inside the pod (as one of its containers would).
func (p *Pod) Start(name string, args ...string) (*Proc, error) {
	return p.Node.Lab.start(p.Command(context.Background(), name, args...), name, p.Node.Dir, p.Name)
}

// AddPodWith is AddPod with runtime capability arguments, such as
// portMappings for hostPort (handled by the portmap plugin in the conflist).
func (n *Node) AddPodWith(ctx context.Context, binDir, name string, capArgs map[string]any) (*Pod, error) {
	p, err := n.NewSandbox(name)
	if err != nil {
		return nil, err
	}
	return p, p.Attach(ctx, binDir, nil, capArgs)
}

// AddKubePod attaches a sandbox for the Kubernetes pod namespace/name,
// passing K8S_POD_NAMESPACE and K8S_POD_NAME as kubelet's runtimes do.
func (n *Node) AddKubePod(ctx context.Context, binDir, namespace, name string) (*Pod, error) {
	p, err := n.NewSandbox(namespace + "-" + name)
	if err != nil {
		return nil, err
	}
	return p, p.Attach(ctx, binDir, KubeArgs(namespace, name), nil)
}

// KubeArgs are the CNI_ARGS a Kubernetes runtime passes for a pod.
func KubeArgs(namespace, name string) [][2]string {
	return [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", name}}
}

// Attach runs CNI ADD for a sandbox made by NewSandbox.
func (p *Pod) Attach(ctx context.Context, binDir string, args [][2]string, capArgs map[string]any) error {
	n, name := p.Node, p.Name
	cni, list, err := n.CNI(binDir)
	if err != nil {
		return err
	}
	rt := p.RuntimeConf()
	rt.Args = args
	rt.CapabilityArgs = capArgs
	var res types.Result
	if err := n.Do(func() error {
		var err error
		res, err = cni.AddNetworkList(ctx, list, rt)
		return err
	}); err != nil {
		return fmt.Errorf("CNI ADD %s on %s: %w", name, n.Name, err)
	}
	p.Result, err = current.NewResultFromResult(res)
	return err
}
