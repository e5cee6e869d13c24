package netlab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Node is one node namespace on the underlay.
type Node struct {
	Lab   *Lab
	Name  string // node name, e.g. node1
	NS    string // namespace name
	Index int    // 1-based
	Addr  netip.Addr
	Addr6 netip.Addr
	// PodCIDRs are the node's pod ranges: 10.244.<i>.0/24 and fd00:10:244:<i>::/64.
	PodCIDRs []netip.Prefix

	Dir        string // per-node scratch dir
	StateDir   string
	RunDir     string // bind-mounted on /run/wireguard for the node's processes
	CNIConfDir string
}

// AddNode creates a node namespace attached to the underlay bridge, with
// eth0 holding 10.99.0.<10+i>/24 and fd99::<10+i>/64.
func (l *Lab) AddNode(name string) (*Node, error) {
	l.mu.Lock()
	idx := len(l.nodes) + 1
	l.mu.Unlock()
	if idx > 200 {
		return nil, fmt.Errorf("lab holds at most 200 nodes")
	}
	n, err := l.addHost(name, fmt.Sprintf("%s-n%d", l.ID, idx),
		netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + idx)}), netip.MustParseAddr(fmt.Sprintf("fd99::%x", 10+idx)))
	if err != nil {
		return nil, err
	}
	return l.register(n, idx), nil
}

// register gives node number idx its pod CIDRs (10.244.<idx>.0/24 and
// fd00:10:244:<idx>::/64) and adds it to the lab's nodes.
func (l *Lab) register(n *Node, idx int) *Node {
	n.Index = idx
	n.PodCIDRs = []netip.Prefix{
		netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", idx)),
		netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::/64", idx)),
	}
	l.mu.Lock()
	l.nodes = append(l.nodes, n)
	l.mu.Unlock()
	return n
}

// addHost creates a namespace on the underlay with the given addresses and
// its own scratch, state, run and CNI directories.
func (l *Lab) addHost(name, ns string, addr, addr6 netip.Addr) (*Node, error) {
	n := &Node{Lab: l, Name: name, NS: ns, Addr: addr, Addr6: addr6, Dir: filepath.Join(l.Dir, name)}
	n.StateDir = filepath.Join(n.Dir, "state")
	n.RunDir = filepath.Join(n.Dir, "run")
	n.CNIConfDir = filepath.Join(n.Dir, "cni-conf")
	for _, d := range []string{n.StateDir, n.RunDir, n.CNIConfDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := l.addNS(n.NS); err != nil {
		return nil, err
	}
	port := "p" + strings.TrimPrefix(ns, l.ID+"-")
	err := runAll(
		[]string{"ip", "-n", n.NS, "link", "set", "lo", "up"},
		[]string{"ip", "-n", n.NS, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.Underlay},
		[]string{"ip", "-n", l.Underlay, "link", "set", port, "master", "br0", "up"},
		[]string{"ip", "-n", n.NS, "addr", "add", n.Addr.String() + "/24", "dev", "eth0"},
		[]string{"ip", "-n", n.NS, "addr", "add", n.Addr6.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"ip", "-n", n.NS, "link", "set", "eth0", "up"},
	)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Command returns a command that runs inside the node: in its network
// namespace and in a private mount namespace where /run/wireguard is the
// node's own RunDir, so wgctrl and `wg` see only this node's devices.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", n.NS,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /run/wireguard && exec "$@"`, n.RunDir, name}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// Run runs a command inside the node and returns its combined output.
func (n *Node) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %v: %s", name, n.Name, err, out)
	}
	return string(out), nil
}

// Ping sends count pings from the node to dst and reports whether one came back.
func (n *Node) Ping(ctx context.Context, dst netip.Addr, count int, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout+2*time.Second)
	defer cancel()
	args := []string{"netns", "exec", n.NS, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-W", fmt.Sprintf("%.1f", timeout.Seconds())}
	if count > 1 {
		args = append(args, "-i", "0.2")
	}
	args = append(args, dst.String())
	return exec.CommandContext(ctx, "ip", args...).Run() == nil
}

// Do runs fn on a thread inside the node's network namespace. Processes
// fn starts (os/exec, libcni) are born in that namespace, as a runtime's
// plugins are born in the host's. The thread returns to its namespace
// afterwards; if it cannot, it stays locked and Go discards it rather than
// reuse a thread in the wrong namespace.
func (n *Node) Do(fn func() error) error { return inNamespace(n.NS, fn) }

// inNamespace runs fn on a thread inside the named network namespace.
func inNamespace(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Dial opens a connection from inside the node's network namespace.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.DialFrom(ctx, netip.Addr{}, network, addr)
}

// DialFrom is Dial from the source address src (invalid: the kernel's
// choice), one of the node's own.
func (n *Node) DialFrom(ctx context.Context, src netip.Addr, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose connections start inside the node.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true},
	}
}

// AddOutside creates a host on the underlay that belongs to no cluster: it
// has no route to any pod CIDR, so only masqueraded pod traffic can get
// an answer from it. Its addresses are 10.99.0.200 and fd99::c8.
func (l *Lab) AddOutside() (*Node, error) {
	return l.addHost("outside", l.ID+"-out", netip.MustParseAddr("10.99.0.200"), netip.MustParseAddr("fd99::c8"))
}

// Router is what stands between a node made by AddNodeBehind and the
// underlay: a namespace that forwards between the underlay bridge and the
// node's own link.
type Router struct {
	// MTU of the link between router and node (both ends); 0: 1500. A
	// smaller MTU is a routed hop the rest of the underlay does not have:
	// the router answers bigger packets with ICMP "fragmentation needed"
	// (IPv4) or "packet too big" (IPv6).
	MTU int
	// NAT masquerades the node's traffic to the underlay's address of the
	// router with random ports: nothing on the underlay can reach the node
	// first. Without NAT every node made so far gets a route to the
	// node's network through the router.
	NAT bool
}

// AddNodeBehind creates a node whose eth0 (10.98.<i>.2/24, fd98:<i>::2/64)
// is linked to a router namespace (10.98.<i>.1 and, on the underlay,
// 10.99.0.<100+i>, fd99::<100+i>) instead of the bridge. Its pod CIDRs are
// AddNode's.
func (l *Lab) AddNodeBehind(name string, r Router) (*Node, error) {
	l.mu.Lock()
	idx := len(l.nodes) + 1
	l.mu.Unlock()
	if idx > 99 {
		return nil, fmt.Errorf("lab holds at most 99 nodes behind routers")
	}
	rt, err := l.addHost(name+"-router", fmt.Sprintf("%s-r%d", l.ID, idx),
		netip.AddrFrom4([4]byte{10, 99, 0, byte(100 + idx)}), netip.MustParseAddr(fmt.Sprintf("fd99::%x", 100+idx)))
	if err != nil {
		return nil, err
	}
	n := &Node{Lab: l, Name: name, NS: fmt.Sprintf("%s-n%d", l.ID, idx), Index: idx,
		Addr: netip.AddrFrom4([4]byte{10, 98, byte(idx), 2}), Addr6: netip.MustParseAddr(fmt.Sprintf("fd98:%x::2", idx)),
		Dir: filepath.Join(l.Dir, name)}
	n.StateDir, n.RunDir, n.CNIConfDir = filepath.Join(n.Dir, "state"), filepath.Join(n.Dir, "run"), filepath.Join(n.Dir, "cni-conf")
	for _, d := range []string{n.StateDir, n.RunDir, n.CNIConfDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := l.addNS(n.NS); err != nil {
		return nil, err
	}
	mtu := r.MTU
	if mtu == 0 {
		mtu = 1500
	}
	gw4, gw6 := fmt.Sprintf("10.98.%d.1", idx), fmt.Sprintf("fd98:%x::1", idx)
	cmds := [][]string{
		{"ip", "-n", n.NS, "link", "set", "lo", "up"},
		{"ip", "-n", n.NS, "link", "add", "eth0", "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "in0", "mtu", fmt.Sprint(mtu), "netns", rt.NS},
		{"ip", "-n", rt.NS, "addr", "add", gw4 + "/24", "dev", "in0"},
		{"ip", "-n", rt.NS, "addr", "add", gw6 + "/64", "dev", "in0", "nodad"},
		{"ip", "-n", rt.NS, "link", "set", "in0", "up"},
		{"ip", "-n", n.NS, "addr", "add", n.Addr.String() + "/24", "dev", "eth0"},
		{"ip", "-n", n.NS, "addr", "add", n.Addr6.String() + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", n.NS, "link", "set", "eth0", "up"},
		{"ip", "-n", n.NS, "route", "add", "default", "via", gw4},
		{"ip", "-n", n.NS, "-6", "route", "add", "default", "via", gw6},
		{"ip", "netns", "exec", rt.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
	}
	if r.NAT {
		cmds = append(cmds, []string{"ip", "netns", "exec", rt.NS, "nft", fmt.Sprintf(
			"add table inet nat; add chain inet nat post { type nat hook postrouting priority 100 ; } ; "+
				"add rule inet nat post oifname eth0 ip saddr 10.98.%d.0/24 masquerade random ; "+
				"add rule inet nat post oifname eth0 ip6 saddr fd98:%x::/64 masquerade random", idx, idx)})
	} else {
		for _, o := range l.Nodes() {
			cmds = append(cmds,
				[]string{"ip", "-n", o.NS, "route", "add", fmt.Sprintf("10.98.%d.0/24", idx), "via", rt.Addr.String()},
				[]string{"ip", "-n", o.NS, "-6", "route", "add", fmt.Sprintf("fd98:%x::/64", idx), "via", rt.Addr6.String()})
		}
	}
	if err := runAll(cmds...); err != nil {
		return nil, err
	}
	return l.register(n, idx), nil
}
