package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/kubeclient"
	"github.com/weftnet/weft/peer"
)

// Peer is a weft.dev/v1alpha1 Peer object, as the agent reads it.
type Peer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PeerSpec `json:"spec"`
}

// PeerSpec is a Peer's spec (the CRD's schema; peer.ParseExternal judges it).
type PeerSpec struct {
	PublicKey           string   `json:"publicKey"`
	AllowedIPs          []string `json:"allowedIPs,omitempty"`
	Endpoint            string   `json:"endpoint,omitempty"`
	PersistentKeepalive int64    `json:"persistentKeepalive,omitempty"`
}

// Peers watches Peer objects: each is parsed alone here (the
// agent judges it against the cluster at every reconcile, with
// peer.AcceptExternals); what fails to parse is reported once.
type Peers struct {
	log     *slog.Logger
	changed func()
	report  func(peer.Rejection)

	mu      sync.Mutex
	parsed  map[string]peer.External
	invalid map[string]string
}

// maxExternals bounds the Peer objects the agent keeps: each becomes a
// WireGuard peer on every node.
const maxExternals = 1024

// StartPeers watches Peer objects once the API serves them; changed is
// called after each change, report with each object that does not parse.
func StartPeers(ctx context.Context, c *kubeclient.Clients, log *slog.Logger, changed func(), report func(peer.Rejection)) (*Peers, error) {
	x := &Peers{log: log, changed: changed, report: report, parsed: map[string]peer.External{}, invalid: map[string]string{}}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    x.set,
		UpdateFunc: func(_, obj any) { x.set(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				x.mu.Lock()
				delete(x.parsed, u.GetName())
				delete(x.invalid, u.GetName())
				x.mu.Unlock()
				x.changed()
			}
		},
	}
	// The informer is made only once the API serves Peer objects: without
	// the CRD (an older manifest) it would log a failed list every few
	// seconds. Checked every minute until it is there.
	go func() {
		warned := false
		for {
			served, err := c.Serves(ctx, kubeclient.PeerGVR.GroupVersion(), kubeclient.PeerGVR.Resource)
			if served {
				if _, err := c.Informers.Peers().AddEventHandler(h); err != nil {
					log.Error("watching Peer objects", "err", err)
					return
				}
				c.Informers.Start(ctx.Done())
				return
			}
			if err == nil {
				err = fmt.Errorf("%s not served", kubeclient.PeerGVR.GroupVersion())
			}
			if !warned {
				log.Warn("the API server does not serve Peer objects (weft.dev/v1alpha1); external peers are off until the CRD is installed", "err", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}()
	return x, nil
}

func (x *Peers) set(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	name := u.GetName()
	e, err := parsePeerObject(u)
	x.mu.Lock()
	switch {
	case err == nil && len(x.parsed) >= maxExternals && !hasKey(x.parsed, name):
		err = fmt.Errorf("over %d Peer objects", maxExternals)
		fallthrough
	case err != nil:
		delete(x.parsed, name)
		report := x.invalid[name] != err.Error()
		x.invalid[name] = err.Error()
		x.mu.Unlock()
		if report {
			x.report(peer.Rejection{Name: "peer/" + name, Reason: peer.ReasonInvalid, Detail: err.Error()})
		}
	default:
		x.parsed[name] = e
		delete(x.invalid, name)
		x.mu.Unlock()
	}
	x.changed()
}

func hasKey(m map[string]peer.External, k string) bool { _, ok := m[k]; return ok }

// parsePeerObject reads a Peer object into its type, then judges its spec
// (peer.ParseExternal bounds every field).
func parsePeerObject(u *unstructured.Unstructured) (peer.External, error) {
	var p Peer
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return peer.External{}, fmt.Errorf("not a Peer: %v", err)
	}
	e, err := peer.ParseExternal(p.Name, peer.ExternalSpec(p.Spec))
	e.Created = p.CreationTimestamp.Time
	return e, err
}

// List returns the parsed Peer objects, sorted by name (none from nil).
func (x *Peers) List() []peer.External {
	if x == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]peer.External, 0, len(x.parsed))
	for _, e := range x.parsed {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b peer.External) int { return strings.Compare(a.Name, b.Name) })
	return out
}
