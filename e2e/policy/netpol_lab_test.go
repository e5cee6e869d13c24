package policy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// The NetworkPolicy lab follows the upstream e2e suite's model: namespaces
// x, y, z (labelled ns=<name>), each with pods a, b, c (labelled pod=<name>)
// spread over three nodes, every pod serving TCP and UDP on 80 and 81 with
// the named ports serve-80-tcp, serve-81-tcp, serve-80-udp, serve-81-udp.
// There is no kubelet: the harness creates the Pod objects (bound to their
// node), attaches each sandbox through libcni with K8S_POD_NAMESPACE/NAME
// as a runtime does, and then writes status.podIPs as kubelet would.

var (
	npNamespaces = []string{"x", "y", "z"}
	npPodNames   = []string{"a", "b", "c"}
)

// probe is one kind of connection attempt.
type probe struct {
	proto string // tcp or udp
	port  int
	v6    bool
}

func (p probe) String() string {
	s := fmt.Sprintf("%s/%d", p.proto, p.port)
	if p.v6 {
		s += "/v6"
	}
	return s
}

// npProbes: the four port/protocol pairs over IPv4, and TCP 80 over IPv6.
// The kernel here has no SCTP, so SCTP is compiled (policy unit tests) but
// not probed.
var npProbes = []probe{{"tcp", 80, false}, {"tcp", 81, false}, {"udp", 80, false}, {"udp", 81, false}, {"tcp", 80, true}}

type npPod struct {
	ns, name string
	node     *netlab.Node
	pod      *netlab.Pod
}

func (p *npPod) key() string { return p.ns + "/" + p.name }

func (p *npPod) is(keys ...string) bool { return slices.Contains(keys, p.key()) }

func (p *npPod) addr(v6 bool) netip.Addr {
	return p.pod.Addr(v6)
}

type npLab struct {
	*labtest.KubeCluster
	pods []*npPod
	by   map[string]*npPod
}

func newNPLab(t testing.TB) *npLab {
	t.Helper()
	k := labtest.NewKubeMesh(t, 3)
	l := &npLab{KubeCluster: k, by: map[string]*npPod{}}
	nodes := k.Lab.Nodes()
	for _, n := range nodes {
		k.WaitCNIConf(n)
	}
	for i, ns := range npNamespaces {
		k.CreateNamespace(ns, map[string]string{"ns": ns})
		for j, name := range npPodNames {
			p := &npPod{ns: ns, name: name, node: nodes[(i+j)%len(nodes)]}
			l.attach(p)
			l.pods = append(l.pods, p)
			l.by[p.key()] = p
		}
	}
	return l
}

// attach creates the Pod object, attaches its sandbox through libcni,
// publishes its addresses in status.podIPs and starts its servers.
func (l *npLab) attach(p *npPod) {
	t := l.T
	t.Helper()
	ctx := context.Background()
	pods := l.Cp.Admin.CoreV1().Pods(p.ns)
	obj, err := pods.Create(ctx, labtest.NpPodObject(p.ns, p.name, p.node.Name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.pod, err = p.node.AddKubePod(ctx, l.Bins, p.ns, p.name); err != nil {
		t.Fatal(err)
	}
	l.setStatus(obj, p)
	serve(t, p.pod)
}

func (l *npLab) setStatus(obj *corev1.Pod, p *npPod) {
	l.T.Helper()
	if err := l.SetRunning(obj, p.pod); err != nil {
		l.T.Fatal(err)
	}
}

// serve starts TCP and UDP servers on 80 and 81 (both families) in the pod:
// TCP accepts and closes, UDP echoes.
func serve(t testing.TB, p *netlab.Pod) {
	t.Helper()
	for _, port := range []int{80, 81} {
		var ln net.Listener
		var pc net.PacketConn
		if err := p.Do(func() error {
			var err error
			if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); err != nil {
				return err
			}
			pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); pc.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
	}
}

// connect makes one attempt from inside from to dst and reports whether it
// got an answer: a completed TCP handshake, or the UDP echo.
func connect(from func(func() error) error, pr probe, dst netip.Addr, timeout time.Duration) bool {
	addr := netip.AddrPortFrom(dst, uint16(pr.port)).String()
	if pr.proto == "tcp" {
		return from(func() error {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	}
	var c net.Conn
	if err := from(func() error {
		var err error
		// The socket lives in the pod and is used from any thread. Its port
		// is new to this run: a reused 5-tuple would ride an earlier
		// probe's conntrack entry, which policy rightly lets through.
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: int(20000 + udpPorts.Add(1)%40000)}}
		c, err = d.Dial("udp", addr)
		return err
	}); err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("weft")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "weft"
}

var udpPorts atomic.Int64

type cell struct {
	from, to *npPod
	pr       probe
}

// expectation says whether from may reach to with pr.
type expectation func(from, to *npPod, pr probe) bool

// probeMatrix probes every cell at once and returns the cells whose outcome
// differs from want (a pod always reaches itself). Cells that fail where an
// answer was expected are tried once more before they count, so that one
// lost packet does not fail a case; a late policy does not hide behind
// that, since probing starts only after the deadline a change must meet.
func (l *npLab) probeMatrix(want expectation) (wrong []cell, got map[cell]bool) {
	var cells []cell
	for _, f := range l.pods {
		for _, to := range l.pods {
			for _, pr := range npProbes {
				cells = append(cells, cell{f, to, pr})
			}
		}
	}
	got = l.probeCells(cells)
	var retry []cell
	for _, c := range cells {
		if exp := c.from == c.to || want(c.from, c.to, c.pr); got[c] != exp && exp {
			retry = append(retry, c)
		}
	}
	for c, ok := range l.probeCells(retry) {
		got[c] = ok
	}
	if len(retry) > 0 {
		l.T.Logf("%d cells answered only on the second try", len(retry))
	}
	for _, c := range cells {
		if got[c] != (c.from == c.to || want(c.from, c.to, c.pr)) {
			wrong = append(wrong, c)
		}
	}
	return wrong, got
}

func (l *npLab) probeCells(cells []cell) map[cell]bool {
	out := make(map[cell]bool, len(cells))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range cells {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok := connect(c.from.pod.Do, c.pr, c.to.addr(c.pr.v6), time.Second)
			mu.Lock()
			out[c] = ok
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// render prints the matrix of one probe as upstream does: rows are
// sources, columns destinations, '.' allowed, 'X' blocked, '!' where the
// outcome is not the expected one.
func (l *npLab) render(pr probe, want expectation, got map[cell]bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (from row to column; . reached, X blocked, ! wrong)\n     ", pr)
	for _, to := range l.pods {
		fmt.Fprintf(&b, " %-4s", to.key())
	}
	b.WriteString("\n")
	for _, f := range l.pods {
		fmt.Fprintf(&b, "%-5s", f.key())
		for _, to := range l.pods {
			ok := got[cell{f, to, pr}]
			mark := "X"
			if ok {
				mark = "."
			}
			if ok != (f == to || want(f, to, pr)) {
				mark = "!"
			}
			fmt.Fprintf(&b, " %-4s", mark)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// syncPolicies makes the policies in x, y and z exactly want (create,
// update or delete) and returns when the last write was acknowledged.
func (l *npLab) syncPolicies(want []*networkingv1.NetworkPolicy) {
	l.T.Helper()
	ctx := context.Background()
	keep := map[string]bool{}
	for _, p := range want {
		keep[p.Namespace+"/"+p.Name] = true
		if err := upsert(ctx, l.Cp.Admin.NetworkingV1().NetworkPolicies(p.Namespace), p.DeepCopy()); err != nil {
			l.T.Fatalf("networkpolicy %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	for _, ns := range npNamespaces {
		c := l.Cp.Admin.NetworkingV1().NetworkPolicies(ns)
		list, err := c.List(ctx, metav1.ListOptions{})
		if err != nil {
			l.T.Fatal(err)
		}
		for _, p := range list.Items {
			if !keep[ns+"/"+p.Name] {
				if err := c.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
					l.T.Fatal(err)
				}
			}
		}
	}
}

// writer is what upsert needs of a typed client.
type writer[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// upsert creates obj, or updates the object of its name to it.
func upsert[T metav1.Object](ctx context.Context, c writer[T], obj T) error {
	old, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, obj, metav1.CreateOptions{})
	case err == nil:
		obj.SetResourceVersion(old.GetResourceVersion())
		_, err = c.Update(ctx, obj, metav1.UpdateOptions{})
	}
	return err
}

// setLabels replaces the labels of a pod ("x/a") or a namespace ("x").
func (l *npLab) setLabels(target string, labels map[string]string) {
	l.T.Helper()
	ctx := context.Background()
	var err error
	if ns, name, ok := strings.Cut(target, "/"); ok {
		var p *corev1.Pod
		if p, err = l.Cp.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			p.Labels = labels
			_, err = l.Cp.Admin.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		}
	} else {
		var n *corev1.Namespace
		if n, err = l.Cp.Admin.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{}); err == nil {
			labels["kubernetes.io/metadata.name"] = target
			n.Labels = labels
			_, err = l.Cp.Admin.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		l.T.Fatalf("labels of %s: %v", target, err)
	}
}

// Policy builders, close to how the YAML reads.

type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func policyOf(ns, name string, target *metav1.LabelSelector, types []networkingv1.PolicyType, ingress, egress []rule) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *target, PolicyTypes: types}}
	for _, r := range ingress {
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
	}
	for _, r := range egress {
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
	}
	return p
}

// sel builds a selector from key/value pairs; sel() selects everything.
func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	for i := 0; i+1 < len(kv); i += 2 {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func selExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func pods(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func namespaces(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func podsIn(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func cidr(c string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c, Except: except}}
}

func portOf(proto corev1.Protocol, p intstr.IntOrString, end ...int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
	if len(end) > 0 {
		np.EndPort = &end[0]
	}
	return np
}

func tcpPort(p int, end ...int32) networkingv1.NetworkPolicyPort {
	return portOf(corev1.ProtocolTCP, intstr.FromInt32(int32(p)), end...)
}

func udpPort(p int) networkingv1.NetworkPolicyPort {
	return portOf(corev1.ProtocolUDP, intstr.FromInt32(int32(p)))
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	return portOf(proto, intstr.FromString(name))
}

var (
	onlyIngress = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	onlyEgress  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	bothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)
