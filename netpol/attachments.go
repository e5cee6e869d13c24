package netpol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/plan"
)

type attachment struct {
	api.Attachment
	ips []netip.Addr
}

// forget drops the attachments of the pods named (plan.PodKey) and saves the rest.
func (n *Controller) forget(pods []string) {
	gone := map[string]bool{}
	for _, k := range pods {
		gone[k] = true
	}
	n.mu.Lock()
	for k, a := range n.atts {
		if a.Name != "" && gone[plan.PodKey(a.Namespace, a.Name)] {
			delete(n.atts, k)
		}
	}
	seq, b := n.encodeAttachmentsLocked()
	n.mu.Unlock()
	n.saveAttachments(seq, b)
}

// attach records an ADD and returns once its policy is programmed.
func (n *Controller) attach(ctx context.Context, in api.Attachment) error {
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
	seq, b := n.encodeAttachmentsLocked()
	n.gen++
	gen := n.gen
	n.mu.Unlock()
	n.saveAttachments(seq, b)
	n.kickNow()
	wctx, cancel := context.WithTimeout(ctx, programWait)
	defer cancel()
	if err := n.waitApplied(wctx, gen); err != nil {
		return fmt.Errorf("network policy for %s not programmed: %w", a.describe(), err)
	}
	return nil
}

// detach forgets an attachment after its DEL.
func (n *Controller) detach(in api.Attachment) {
	n.mu.Lock()
	k := attachment{Attachment: in}.key()
	if _, ok := n.atts[k]; !ok {
		n.mu.Unlock()
		return
	}
	delete(n.atts, k)
	seq, b := n.encodeAttachmentsLocked()
	n.gen++
	n.mu.Unlock()
	n.saveAttachments(seq, b)
	n.kickNow()
}

func (n *Controller) kickNow() {
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
func (n *Controller) validate(a *attachment) error {
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
func (n *Controller) waitPod(ctx context.Context, ns, name string) error {
	var inInformer *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, podWait, true, func(context.Context) (bool, error) {
		p, err := n.pods.Pods(ns).Get(name)
		inInformer = p
		return err == nil, nil
	})
	switch {
	case err == nil:
		return n.checkNode(inInformer)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	// podWait passed: the informer lags, so ask the API server.
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := n.kube.GetPod(gctx, ns, name)
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

func (n *Controller) checkNode(p *corev1.Pod) error {
	if p.Spec.NodeName != n.node {
		return fmt.Errorf("pod %s/%s is bound to node %q, not %q", p.Namespace, p.Name, p.Spec.NodeName, n.node)
	}
	return nil
}

// encodeAttachmentsLocked snapshots the attachments for saveAttachments
// (n.mu held), numbered in the order of the changes.
func (n *Controller) encodeAttachmentsLocked() (seq uint64, b []byte) {
	list := make([]api.Attachment, 0, len(n.atts))
	for _, a := range n.atts {
		list = append(list, a.Attachment)
	}
	slices.SortFunc(list, func(a, b api.Attachment) int {
		return strings.Compare(a.ContainerID+"/"+a.IfName, b.ContainerID+"/"+b.IfName)
	})
	b, _ = json.Marshal(list)
	n.saveSeq++
	return n.saveSeq, b
}

// saveAttachments writes snapshot seq (b) unless a newer one was written.
// Only saveMu is held across the write and its fsync: the policy
// controller and weft-cni's other calls go on meanwhile.
func (n *Controller) saveAttachments(seq uint64, b []byte) {
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	if seq <= n.savedSeq {
		return
	}
	if err := atomicfile.Write(filepath.Join(n.stateDir, attachmentsFile), b, 0o600); err != nil {
		n.log.Warn("cannot save attachments", "err", err)
		return
	}
	n.savedSeq = seq
}

// loadAttachments restores what weft-cni reported before a restart; any
// entry that no longer validates is dropped.
func (n *Controller) loadAttachments() {
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

func (n *Controller) isLocalAddr(ip netip.Addr) bool {
	return slices.ContainsFunc(n.local, func(p netip.Prefix) bool { return p.Contains(ip) })
}
