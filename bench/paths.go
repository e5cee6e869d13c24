package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// Path is one way between two namespaces that the bench measures.
type Path struct {
	Name        string
	Description string
	ClientNS    string
	ServerNS    string
	Server      netip.Addr
	// Flows are the multi-flow run's pairs (MultiFlows of them, at once):
	// for pod paths a pod pair each, otherwise the path's own two ends.
	Flows []Flow
	// procs run the tunnel in userspace (client side first); their CPU time
	// is the path's cost.
	procs []*netlab.Proc
	// pinned: the client side (its programs and its tunnel process) runs on
	// clientCPU, the server side on serverCPU.
	pinned bool
	// NoICMP: the server address does not answer ping (a ClusterIP only
	// carries its Service's ports); the path has no ping figures.
	NoICMP bool
	// pods: weft's pods on the client and the server node (MultiFlows each).
	pods [2][]*netlab.Pod
}

// Flow is one client/server pair of the multi-flow run; its iperf3 server
// listens on Port.
type Flow struct {
	ClientNS, ServerNS string
	Server             netip.Addr
	Port               int
}

// MultiFlows is how many pairs the multi-flow run drives at once (4 pod
// pairs across 2 nodes on weft's pod paths).
const MultiFlows = 4

// flowPort is the first multi-flow iperf3 port (the path's own is 5201).
const flowPort = 5301

// sameEnds are MultiFlows flows between the path's own two ends.
func (p *Path) sameEnds() []Flow {
	var fs []Flow
	for i := range MultiFlows {
		fs = append(fs, Flow{ClientNS: p.ClientNS, ServerNS: p.ServerNS, Server: p.Server, Port: flowPort + i})
	}
	return fs
}

// The CPUs of the two sides of every path when the lab pins.
const clientCPU, serverCPU = 0, 1

// pin gives each side of every path a CPU of its own, as two real nodes
// have: the client's programs and the client-side tunnel process on
// clientCPU, the server's on serverCPU. Without it, iperf3, both tunnel
// ends and the kernel contend for the same cores and the figures move by
// ±25 % between runs. Baselines and weft are pinned alike; the kernel's
// own work (softirq) still runs where the packet is. Machines with one CPU
// are not pinned.
func (l *Lab) pin(ctx context.Context) error {
	if runtime.NumCPU() < 2 {
		return nil
	}
	for _, p := range l.Paths {
		p.pinned = true
		for i, pr := range p.procs {
			cpu := clientCPU
			if i == 1 {
				cpu = serverCPU
			}
			if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", fmt.Sprint(cpu), fmt.Sprint(pr.Pid())).CombinedOutput(); err != nil {
				return fmt.Errorf("pin %s: %v %s", pr.Name, err, out)
			}
		}
	}
	return nil
}

// cpuSeconds is the user+system CPU time the path's processes used so far.
func (p *Path) cpuSeconds() (float64, bool) {
	if len(p.procs) == 0 {
		return 0, false
	}
	var total float64
	for _, pr := range p.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pr.Pid()))
		if err != nil {
			return 0, false
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(fields[11], 64) // utime, field 14
		st, _ := strconv.ParseFloat(fields[12], 64) // stime, field 15
		total += (ut + st) / clockTicks
	}
	return total, true
}

// rssMiB is the resident memory of the path's userspace processes (0 when
// one cannot be read).
func (p *Path) rssMiB() float64 { return p.status("VmRSS:") }

// peakRSSMiB is their peak resident memory so far (VmHWM).
func (p *Path) peakRSSMiB() float64 { return p.status("VmHWM:") }

// status sums a kB field of the processes' /proc/<pid>/status, in MiB.
func (p *Path) status(field string) float64 {
	var total float64
	for _, pr := range p.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pr.Pid()))
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				total += kb / 1024
			}
		}
	}
	return total
}

// clockTicks is USER_HZ, which is 100 on every Linux architecture Go targets.
const clockTicks = 100

// Lab is the bench's lab: weft on node1/node2 (with a pod on each), kernel
// VXLAN between node1 and node2, upstream wireguard-go and Tailscale's fork
// between node3 and node4, all on the same underlay bridge.
type Lab struct {
	*netlab.Lab
	Paths     []*Path
	bins      string
	gossipKey string
	agents    []*netlab.Proc
	weftNodes []*netlab.Node
}

// NewLab builds the bench lab. binDir holds weft's binaries, wireguard-go,
// the reference CNI plugins and weft-bench itself.
// controlPlaneDir holds etcd, kube-apiserver and kube-proxy; "" leaves the
// pod-to-Service path out.
func NewLab(ctx context.Context, binDir, controlPlaneDir string) (l *Lab, err error) {
	nl, err := netlab.New(netlab.Options{})
	if err != nil {
		return nil, err
	}
	l = &Lab{Lab: nl, bins: binDir}
	defer func() {
		if err != nil {
			nl.Close()
		}
	}()
	var nodes []*netlab.Node
	for i := 1; i <= 6; i++ {
		n, err := nl.AddNode(fmt.Sprintf("node%d", i))
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	n1, n2, n3, n4, n5, n6 := nodes[0], nodes[1], nodes[2], nodes[3], nodes[4], nodes[5]
	l.Paths = append(l.Paths, &Path{Name: "veth", Description: "raw underlay: veth and bridge, no tunnel",
		ClientNS: n1.NS, ServerNS: n2.NS, Server: n2.Addr})

	// Kernel VXLAN, flannel's unencrypted default.
	for i, n := range []*netlab.Node{n1, n2} {
		peer := []*netlab.Node{n2, n1}[i]
		if _, err := n.Run(ctx, "sh", "-c", fmt.Sprintf(
			"ip link add vxb0 type vxlan id 42 local %s remote %s dstport 4789 dev eth0 && ip addr add 10.98.0.%d/24 dev vxb0 && ip link set vxb0 up",
			n.Addr, peer.Addr, i+1)); err != nil {
			return nil, err
		}
	}
	l.Paths = append(l.Paths, &Path{Name: "vxlan", Description: "kernel VXLAN (unencrypted)",
		ClientNS: n1.NS, ServerNS: n2.NS, Server: netip.MustParseAddr("10.98.0.2")})

	// The two userspace anchors on the same two nodes, each on its own
	// device, port and subnet: upstream wireguard-go (the module weft
	// uses) and Tailscale's fork of it.
	for _, impl := range []userspaceWG{
		{name: "wireguard-go", bin: "wireguard-go", desc: "upstream wireguard-go, node to node", dev: "wgb0", port: 51820, subnet: 97},
		{name: "wireguard-go-tailscale", bin: "wireguard-go-tailscale", desc: "Tailscale's wireguard-go fork, node to node", dev: "wgt0", port: 51830, subnet: 95},
	} {
		wg, err := l.userspaceWireGuard(ctx, n3, n4, impl)
		if err != nil {
			return nil, err
		}
		l.Paths = append(l.Paths, wg)
	}

	weft, err := l.weft(ctx, n1, n2)
	if err != nil {
		return nil, err
	}
	// weft node to node: the same topology as the wireguard-go baseline (no
	// pod veths), so the two compare like with like.
	l.Paths = append(l.Paths, &Path{Name: "weft-node", Description: "weft, node to node (encrypted; same topology as wireguard-go)",
		ClientNS: n1.NS, ServerNS: n2.NS, Server: api.FirstAddress(n2.PodCIDRs[0]), procs: weft.procs}, weft)
	if controlPlaneDir != "" {
		svc, err := l.service(ctx, controlPlaneDir, weft)
		if err != nil {
			return nil, err
		}
		l.Paths = append(l.Paths, svc)
	}
	// weft inside one location with --intra-location=direct: pod to pod
	// over the underlay, no tunnel (its own two nodes and gossip).
	direct, err := l.weft(ctx, n5, n6, "--location", "bench", "--intra-location", "direct")
	if err != nil {
		return nil, err
	}
	direct.Name, direct.Description = "weft-direct", "weft, pod to pod inside one location (direct: no tunnel, no NAT)"
	l.Paths = append(l.Paths, direct)
	for _, p := range l.Paths {
		if len(p.Flows) == 0 {
			p.Flows = p.sameEnds()
		}
	}
	if err := l.pin(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// userspaceWG is a userspace WireGuard the bench compares weft with: its
// binary in the bin directory, the device it makes, its UDP port and the
// tunnel subnet 10.<subnet>.0.0/24.
type userspaceWG struct {
	name, bin, desc, dev string
	port, subnet         int
}

// userspaceWireGuard runs w (built from its module: upstream's is the
// version weft uses) on a and b, configured through wgctrl, with the same
// MTU as weft.
func (l *Lab) userspaceWireGuard(ctx context.Context, a, b *netlab.Node, w userspaceWG) (*Path, error) {
	keys := make([]wgtypes.Key, 2)
	p := &Path{Name: w.name, Description: w.desc,
		ClientNS: a.NS, ServerNS: b.NS, Server: netip.AddrFrom4([4]byte{10, byte(w.subnet), 0, 2})}
	for i, n := range []*netlab.Node{a, b} {
		keys[i], _ = wgtypes.GeneratePrivateKey()
		proc, err := n.Start(filepath.Join(l.bins, w.bin), "-f", w.dev)
		if err != nil {
			return nil, err
		}
		p.procs = append(p.procs, proc)
		sock := filepath.Join(n.RunDir, w.dev+".sock")
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s on %s: no UAPI socket:\n%s", w.bin, n.Name, proc.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, n := range []*netlab.Node{a, b} {
		peer := []*netlab.Node{b, a}[i]
		keyFile := filepath.Join(n.Dir, w.dev+".key")
		if err := os.WriteFile(keyFile, []byte(keys[i].String()), 0o600); err != nil {
			return nil, err
		}
		if _, err := n.Run(ctx, filepath.Join(l.bins, "weft-bench"), "wg-configure", "--interface", w.dev,
			"--private-key-file", keyFile, "--listen-port", fmt.Sprint(w.port),
			"--peer", fmt.Sprintf("%s,%s:%d,10.%d.0.%d/32", keys[1-i].PublicKey(), peer.Addr, w.port, w.subnet, 2-i)); err != nil {
			return nil, err
		}
		if _, err := n.Run(ctx, "sh", "-c", fmt.Sprintf("ip addr add 10.%d.0.%d/24 dev %s && ip link set %s mtu 1420 up", w.subnet, i+1, w.dev, w.dev)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// shippedMemLimit is the GOMEMLIMIT deploy/weft.yaml and the chart's
// goMemLimit give the agent; the bench runs the agents as shipped (the
// anchors run as their upstreams ship them, with none).
const shippedMemLimit = "256MiB"

// weft starts weft agents on a and b (a the gossip seed, extra flags
// appended) and attaches a pod to each. The first pair it starts is the
// one the agent profiles and churn figures are about.
func (l *Lab) weft(ctx context.Context, a, b *netlab.Node, extra ...string) (*Path, error) {
	if l.gossipKey == "" {
		key, err := l.WriteGossipKey()
		if err != nil {
			return nil, err
		}
		l.gossipKey = key
	}
	first := len(l.agents) == 0
	p := &Path{Name: "weft", Description: "weft, pod to pod across nodes (encrypted)"}
	for _, n := range []*netlab.Node{a, b} {
		args := append(n.AgentArgs(l.gossipKey, a), extra...)
		if first {
			args = append(args, "--pprof-addr", netlab.AgentPprof)
		}
		// As shipped: the DaemonSet sets the Go heap's soft limit.
		proc, err := n.Start("env", append([]string{"GOMEMLIMIT=" + shippedMemLimit, filepath.Join(l.bins, "weft-agent")}, args...)...)
		if err != nil {
			return nil, err
		}
		p.procs = append(p.procs, proc)
		if first {
			l.agents = append(l.agents, proc)
			l.weftNodes = append(l.weftNodes, n)
		}
	}
	if err := l.WaitMesh(ctx, l.bins, 30*time.Second, a, b); err != nil {
		return nil, err
	}
	// MultiFlows pods on each node: the first pair is the path's, all of
	// them the multi-flow run's.
	var pods [2][]*netlab.Pod
	for i, n := range []*netlab.Node{a, b} {
		if err := n.WaitCNIConf(ctx, 20*time.Second); err != nil {
			return nil, err
		}
		for j := range MultiFlows {
			name := "bench"
			if j > 0 {
				name = fmt.Sprintf("bench%d", j+1)
			}
			pod, err := n.AddPod(ctx, l.bins, name)
			if err != nil {
				return nil, err
			}
			pods[i] = append(pods[i], pod)
		}
	}
	p.pods = pods
	p.ClientNS, p.ServerNS, p.Server = pods[0][0].NS, pods[1][0].NS, pods[1][0].Addr(false)
	for j := range MultiFlows {
		p.Flows = append(p.Flows, Flow{ClientNS: pods[0][j].NS, ServerNS: pods[1][j].NS, Server: pods[1][j].Addr(false), Port: flowPort + j})
	}
	return p, nil
}
