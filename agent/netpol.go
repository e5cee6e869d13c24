package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/policy"
)

// AgentSocket is the agent's Unix socket in its state directory, through
// which weft-cni reports attachments. Only root on the node can reach it,
// unlike the HTTP port, so a pod cannot claim another pod's identity.
const AgentSocket = "agent.sock"

const (
	attachmentsFile   = "attachments.json"
	maxAttachments    = 4096
	maxAttachmentBody = 16 << 10
	podWait           = 3 * time.Second  // for a new pod to reach the informer
	programWait       = 10 * time.Second // for its policy to reach nftables
	extraTTL          = 30 * time.Second
)

// NetPol is the NetworkPolicy controller of one node: it watches Pods,
// Namespaces and NetworkPolicies, compiles the policy of the pods attached
// on this node (policy.Compile) and programs it (policy.Enforcer).
//
// A pod's addresses come from weft-cni, which reports each ADD and waits
// until the pod's rules are in place; until then the data plane drops the
// address (fail closed). Pods attached before the agent (re)started are
// known from the saved attachments and from status.podIPs.
type NetPol struct {
	client   kubernetes.Interface
	node     string
	stateDir string
	log      *slog.Logger
	enf      *policy.Enforcer
	metrics  *metrics
	local    []netip.Prefix
	own      []netip.Addr // the node's addresses in its pod ranges

	factory  informers.SharedInformerFactory
	pods     listersv1.PodLister
	nss      listersv1.NamespaceLister
	nps      networkinglisters.NetworkPolicyLister
	synced   []cache.InformerSynced
	kick     chan struct{}
	firstRun chan struct{} // closed after the first successful sync
	healthy  atomic.Bool

	mu      sync.Mutex
	atts    map[string]attachment // by containerID/ifName
	extra   map[string]extraPod   // pods read directly while the informer lags
	gen     uint64                // bumped by every change that must reach nftables
	applied uint64                // last generation in nftables
	lastErr error
	changed *sync.Cond
}

type attachment struct {
	api.Attachment
	ips []netip.Addr
}

type extraPod struct {
	pod  *corev1.Pod
	seen time.Time
}

func newNetPol(client kubernetes.Interface, cfg Config, own []netip.Addr, m *metrics, log *slog.Logger) (*NetPol, error) {
	enf, err := policy.NewEnforcer(nil)
	if err != nil {
		return nil, err
	}
	n := &NetPol{client: client, node: cfg.NodeName, stateDir: cfg.StateDir, log: log, enf: enf, metrics: m,
		local: cfg.PodCIDRs, own: own, kick: make(chan struct{}, 1), firstRun: make(chan struct{}),
		atts: map[string]attachment{}, extra: map[string]extraPod{}}
	n.changed = sync.NewCond(&n.mu)
	n.loadAttachments()
	return n, nil
}

// slimPod keeps what policy needs of a Pod, so that watching every pod of
// a large cluster costs little memory.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
		ResourceVersion: p.ResourceVersion, Labels: p.Labels}}
	s.Spec.NodeName, s.Spec.HostNetwork = p.Spec.NodeName, p.Spec.HostNetwork
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		if len(c.Ports) > 0 {
			s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	s.Status.Phase, s.Status.PodIPs = p.Status.Phase, p.Status.PodIPs
	return s, nil
}

// Start starts the informers and the sync loop; FirstSync is closed once
// the data plane holds the policy of every known pod.
func (n *NetPol) Start(ctx context.Context) {
	n.factory = informers.NewSharedInformerFactoryWithOptions(n.client, 10*time.Minute, informers.WithTransform(slimPod))
	pods := n.factory.Core().V1().Pods()
	nss := n.factory.Core().V1().Namespaces()
	nps := n.factory.Networking().V1().NetworkPolicies()
	n.pods, n.nss, n.nps = pods.Lister(), nss.Lister(), nps.Lister()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.poke() },
		UpdateFunc: func(old, cur any) { n.poke() },
		DeleteFunc: func(any) { n.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), nss.Informer(), nps.Informer()} {
		inf.AddEventHandler(h)
		n.synced = append(n.synced, inf.HasSynced)
	}
	n.factory.Start(ctx.Done())
	go n.loop(ctx)
}

// Stop stops the informers.
func (n *NetPol) Stop() {
	if n.factory != nil {
		n.factory.Shutdown()
	}
}

// FirstSync is closed after the first successful sync.
func (n *NetPol) FirstSync() <-chan struct{} { return n.firstRun }

// Healthy reports whether the last sync reached nftables.
func (n *NetPol) Healthy() bool { return n.healthy.Load() }

// poke asks for a sync of whatever changed in the informers.
func (n *NetPol) poke() {
	n.mu.Lock()
	n.gen++
	n.mu.Unlock()
	n.kickNow()
}

func (n *NetPol) loop(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), n.synced...) {
		return
	}
	n.log.Info("network policy informers synced")
	backoff := time.Second
	retry := time.NewTimer(0)
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.lastErr = ctx.Err()
			n.changed.Broadcast()
			n.mu.Unlock()
			return
		case <-n.kick:
		case <-retry.C:
		}
		n.mu.Lock()
		gen := n.gen
		n.mu.Unlock()
		err := n.sync(ctx)
		n.mu.Lock()
		n.lastErr = err
		if err == nil && gen > n.applied {
			n.applied = gen
		}
		n.changed.Broadcast()
		n.mu.Unlock()
		if err != nil {
			n.healthy.Store(false)
			n.metrics.policySyncs.WithLabelValues("error").Inc()
			n.log.Error("network policy sync failed; retrying", "err", err, "in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = time.Second
		if !n.healthy.Swap(true) {
			select {
			case <-n.firstRun:
			default:
				close(n.firstRun)
				n.log.Info("network policy programmed")
			}
		}
	}
}

// sync compiles and programs the desired state.
func (n *NetPol) sync(ctx context.Context) error {
	start := time.Now()
	d, local, errs := n.desired()
	for _, err := range errs {
		n.log.Warn("network policy ignored", "err", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ops, err := n.enf.Apply(sctx, d)
	if err != nil {
		return err
	}
	isolated := 0
	for _, p := range d.Pods {
		if p.IngressIsolated || p.EgressIsolated {
			isolated++
		}
	}
	n.metrics.policyPods.Set(float64(isolated))
	if ops == 0 {
		n.metrics.policySyncs.WithLabelValues("unchanged").Inc()
		return nil
	}
	n.metrics.policySyncs.WithLabelValues("changed").Inc()
	n.log.Debug("network policy synced", "local_pods", local, "isolated", isolated, "nft_operations", ops, "took", time.Since(start))
	return nil
}

// desired builds the compiler's view of the cluster and compiles the pods
// attached here.
func (n *NetPol) desired() (policy.Desired, int, []error) {
	c := policy.Cluster{Namespaces: map[string]map[string]string{}}
	if nss, err := n.nss.List(labels.Everything()); err == nil {
		for _, ns := range nss {
			c.Namespaces[ns.Name] = ns.Labels
		}
	}
	if nps, err := n.nps.List(labels.Everything()); err == nil {
		for _, p := range nps {
			c.Policies = append(c.Policies, *p)
		}
	}
	// Attachments first, pods second: an attachment is recorded only once
	// its pod is in the informer (or in extra), so every pod of this
	// snapshot is in the list taken after it, unless it has been deleted.
	n.mu.Lock()
	atts := make([]attachment, 0, len(n.atts))
	for _, a := range n.atts {
		atts = append(atts, a)
	}
	var extra []*corev1.Pod
	for k, e := range n.extra {
		if _, err := n.pods.Pods(e.pod.Namespace).Get(e.pod.Name); err == nil || time.Since(e.seen) > extraTTL {
			delete(n.extra, k)
			continue
		}
		extra = append(extra, e.pod)
	}
	n.mu.Unlock()
	pods, _ := n.pods.List(labels.Everything())
	pods = append(pods, extra...)

	// Addresses attached here, by pod; an address belongs to its latest
	// attachment only (weft-cni's IPAM never hands out one address twice).
	byPod := map[string][]netip.Addr{}
	attached := map[netip.Addr]string{}
	d := policy.Desired{LocalCIDRs: n.local, Known: slices.Clone(n.own)}
	for _, a := range atts {
		key := a.Namespace + "/" + a.Name
		for _, ip := range a.ips {
			attached[ip] = key
			d.Known = append(d.Known, ip)
		}
		if a.Name != "" {
			byPod[key] = append(byPod[key], a.ips...)
		}
	}
	var local []policy.Pod
	found := map[string]bool{}
	for _, p := range pods {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		key := p.Namespace + "/" + p.Name
		ips := byPod[key]
		isLocal := p.Spec.NodeName == n.node
		if len(ips) == 0 {
			for _, s := range p.Status.PodIPs {
				ip, err := netip.ParseAddr(s.IP)
				if err != nil {
					continue
				}
				ip = ip.Unmap()
				if owner, ok := attached[ip]; ok && owner != key {
					continue // a stale status: the address belongs to a newer pod here
				}
				if n.isLocalAddr(ip) != isLocal {
					continue // only a pod on this node can hold an address of this node, and vice versa
				}
				ips = append(ips, ip)
			}
		}
		if len(ips) == 0 {
			continue
		}
		pp := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IPs: ips}
		for _, ctr := range p.Spec.Containers {
			pp.Ports = append(pp.Ports, ctr.Ports...)
		}
		c.Pods = append(c.Pods, pp)
		if isLocal {
			found[key] = true
			local = append(local, pp)
			d.Known = append(d.Known, ips...)
		}
	}
	pps, errs := policy.Compile(c, local)
	d.Pods = pps
	// Attached pods the API no longer has (or that have finished) are on
	// their way out: isolate them both ways now, and forget them, so that
	// their addresses count as not programmed from the next sync on. This
	// also bounds the attachments a node keeps when DELs go missing.
	gone := map[string]bool{}
	for key, ips := range byPod {
		if !found[key] {
			gone[key] = true
			d.Pods = append(d.Pods, policy.PodPolicy{IPs: ips, IngressIsolated: true, EgressIsolated: true})
		}
	}
	if len(gone) > 0 {
		n.mu.Lock()
		for k, a := range n.atts {
			if a.Name != "" && gone[a.Namespace+"/"+a.Name] {
				delete(n.atts, k)
			}
		}
		n.saveAttachmentsLocked()
		n.mu.Unlock()
	}
	return d, len(local), errs
}

func (n *NetPol) isLocalAddr(ip netip.Addr) bool {
	for _, p := range n.local {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// waitApplied waits until generation gen is in nftables.
func (n *NetPol) waitApplied(ctx context.Context, gen uint64) error {
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.changed.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.applied < gen {
		if ctx.Err() != nil {
			if n.lastErr != nil {
				return n.lastErr
			}
			return ctx.Err()
		}
		n.changed.Wait()
	}
	return nil
}

// attach records an ADD and returns once its policy is programmed.
func (n *NetPol) attach(ctx context.Context, in api.Attachment) error {
	a := attachment{Attachment: in}
	if err := n.validate(&a); err != nil {
		return err
	}
	if a.Name != "" {
		if err := n.waitPod(ctx, a.Namespace, a.Name); err != nil {
			return err
		}
	}
	n.mu.Lock()
	if _, ok := n.atts[a.key()]; !ok && len(n.atts) >= maxAttachments {
		n.mu.Unlock()
		return fmt.Errorf("more than %d attachments on this node", maxAttachments)
	}
	for k, old := range n.atts {
		for _, ip := range old.ips {
			if slices.Contains(a.ips, ip) {
				delete(n.atts, k) // the address was freed by a DEL we did not hear of
			}
		}
	}
	n.atts[a.key()] = a
	n.saveAttachmentsLocked()
	n.gen++
	gen := n.gen
	n.mu.Unlock()
	n.kickNow()
	wctx, cancel := context.WithTimeout(ctx, programWait)
	defer cancel()
	if err := n.waitApplied(wctx, gen); err != nil {
		return fmt.Errorf("network policy for %s not programmed: %w", a.describe(), err)
	}
	return nil
}

// detach forgets an attachment after its DEL.
func (n *NetPol) detach(in api.Attachment) {
	n.mu.Lock()
	k := attachment{Attachment: in}.key()
	if _, ok := n.atts[k]; !ok {
		n.mu.Unlock()
		return
	}
	delete(n.atts, k)
	n.saveAttachmentsLocked()
	n.gen++
	n.mu.Unlock()
	n.kickNow()
}

func (n *NetPol) kickNow() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (a attachment) key() string { return a.ContainerID + "/" + a.IfName }

func (a attachment) describe() string {
	if a.Name == "" {
		return "container " + a.ContainerID
	}
	return "pod " + a.Namespace + "/" + a.Name
}

// validate checks an attachment from weft-cni: its addresses must be in
// this node's pod ranges, its pod name well formed.
func (n *NetPol) validate(a *attachment) error {
	if a.ContainerID == "" || len(a.ContainerID) > 256 || a.IfName == "" || len(a.IfName) > 15 {
		return errors.New("attachment: containerID and ifName are required")
	}
	if (a.Namespace == "") != (a.Name == "") {
		return errors.New("attachment: namespace and name go together")
	}
	if a.Name != "" {
		if errs := validation.IsDNS1123Label(a.Namespace); len(errs) > 0 {
			return fmt.Errorf("attachment: namespace %q: %s", a.Namespace, errs[0])
		}
		if errs := validation.IsDNS1123Subdomain(a.Name); len(errs) > 0 {
			return fmt.Errorf("attachment: pod name %q: %s", a.Name, errs[0])
		}
	}
	if len(a.IPs) == 0 || len(a.IPs) > 2 {
		return fmt.Errorf("attachment: want one or two addresses, got %d", len(a.IPs))
	}
	for _, s := range a.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("attachment: %q is not an address", s)
		}
		if ip = ip.Unmap(); !n.isLocalAddr(ip) || slices.Contains(n.own, ip) {
			return fmt.Errorf("attachment: %s is not a pod address of this node", ip)
		}
		a.ips = append(a.ips, ip)
	}
	return nil
}

// waitPod waits for the pod to reach the informer; when it lags, the pod
// is read from the API server. A pod that does not exist, or is bound to
// another node, is refused: its policy cannot be known.
func (n *NetPol) waitPod(ctx context.Context, ns, name string) error {
	deadline := time.Now().Add(podWait)
	for {
		if p, err := n.pods.Pods(ns).Get(name); err == nil {
			return n.checkNode(p)
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := n.client.CoreV1().Pods(ns).Get(gctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("pod %s/%s does not exist", ns, name)
	}
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	if err := n.checkNode(p); err != nil {
		return err
	}
	slim, _ := slimPod(p)
	n.mu.Lock()
	n.extra[ns+"/"+name] = extraPod{pod: slim.(*corev1.Pod), seen: time.Now()}
	n.mu.Unlock()
	return nil
}

func (n *NetPol) checkNode(p *corev1.Pod) error {
	if p.Spec.NodeName != n.node {
		return fmt.Errorf("pod %s/%s is bound to node %q, not %q", p.Namespace, p.Name, p.Spec.NodeName, n.node)
	}
	return nil
}

func (n *NetPol) saveAttachmentsLocked() {
	list := make([]api.Attachment, 0, len(n.atts))
	for _, a := range n.atts {
		list = append(list, a.Attachment)
	}
	slices.SortFunc(list, func(a, b api.Attachment) int {
		return strings.Compare(a.ContainerID+"/"+a.IfName, b.ContainerID+"/"+b.IfName)
	})
	b, _ := json.Marshal(list)
	if err := atomicfile.Write(filepath.Join(n.stateDir, attachmentsFile), b, 0o600); err != nil {
		n.log.Warn("cannot save attachments", "err", err)
	}
}

// loadAttachments restores what weft-cni reported before a restart; any
// entry that no longer validates is dropped.
func (n *NetPol) loadAttachments() {
	f, err := os.Open(filepath.Join(n.stateDir, attachmentsFile))
	if err != nil {
		return
	}
	defer f.Close()
	var list []api.Attachment
	if err := json.NewDecoder(io.LimitReader(f, maxAttachments*1024)).Decode(&list); err != nil {
		n.log.Warn("ignoring saved attachments", "err", err)
		return
	}
	for _, in := range list {
		a := attachment{Attachment: in}
		if err := n.validate(&a); err != nil {
			n.log.Warn("ignoring saved attachment", "err", err)
			continue
		}
		n.atts[a.key()] = a
	}
}

// serveSocket serves weft-cni's requests on the agent's Unix socket.
func (n *NetPol) serveSocket() (func(), error) {
	path := filepath.Join(n.stateDir, AgentSocket)
	os.Remove(path)
	if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	decode := func(w http.ResponseWriter, r *http.Request) (api.Attachment, bool) {
		var a api.Attachment
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAttachmentBody)).Decode(&a); err != nil {
			http.Error(w, "attachment: "+err.Error(), http.StatusBadRequest)
			return a, false
		}
		return a, true
	}
	mux.HandleFunc("POST "+api.AttachmentsPath, func(w http.ResponseWriter, r *http.Request) {
		a, ok := decode(w, r)
		if !ok {
			return
		}
		if err := n.attach(r.Context(), a); err != nil {
			n.log.Warn("attachment refused", "container", a.ContainerID, "pod", a.Namespace+"/"+a.Name, "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+api.AttachmentsPath, func(w http.ResponseWriter, r *http.Request) {
		a, ok := decode(w, r)
		if !ok {
			return
		}
		n.detach(a)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close(); os.Remove(path) }, nil
}
