// Package kubeclient is the agent's connection to the API server: REST
// clients of the few API groups it reads, its informers (one per kind),
// and the Node it keeps of each Node. The sources (source/kube) and the
// policy controller (netpol) share it.
package kubeclient

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The agent talks to the API server through REST clients of the few API
// groups it reads (core/v1, networking.k8s.io/v1, and
// policy.networking.k8s.io/v1beta1 for ClusterNetworkPolicy) instead of
// client-go's clientset, discovery client and informer factory: those
// import every built-in API group (56 packages of types, their protobuf
// and conversion code), which made a third of the agent's binary and was
// mapped into every agent's memory (docs/design.md, "Memory at 5000").
var (
	// Scheme holds the kinds the agent reads (and Events).
	Scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(Scheme)
	params = runtime.NewParameterCodec(Scheme)
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, networkingv1.AddToScheme, cnp.Install} {
		if err := add(Scheme); err != nil {
			panic(err)
		}
	}
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
}

// CNPGroupVersion is the ClusterNetworkPolicy API the agent reads.
var CNPGroupVersion = schema.GroupVersion{Group: cnp.GroupVersion.Group, Version: cnp.GroupVersion.Version}

// Clients are the agent's connections to the API server, all made from one
// configuration (RESTConfig): requests bounded by the client timeout, and
// Informers, every watch of the agent (Nodes here, Peer objects, and the
// NetworkPolicy controller's Pods, Namespaces, NetworkPolicies and
// ClusterNetworkPolicies), on clients without that timeout (WatchConfig).
type Clients struct {
	core      *rest.RESTClient // core/v1 requests, JSON, bounded by the timeout
	Informers *Informers
}

// NewClients makes the agent's clients from a kubeconfig file or, without
// one, the in-cluster service account.
func NewClients(kubeconfig string) (*Clients, error) {
	cfg, err := RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return clientsFor(cfg)
}

func clientsFor(cfg *rest.Config) (*Clients, error) {
	core, err := restClient(cfg, corev1.SchemeGroupVersion, false)
	if err != nil {
		return nil, err
	}
	w := WatchConfig(cfg)
	f := &Informers{infs: map[string]cache.SharedIndexInformer{}, started: map[string]bool{}}
	if f.core, err = restClient(w, corev1.SchemeGroupVersion, true); err != nil {
		return nil, err
	}
	if f.networking, err = restClient(w, networkingv1.SchemeGroupVersion, true); err != nil {
		return nil, err
	}
	if f.cnp, err = restClient(w, CNPGroupVersion, false); err != nil {
		return nil, err
	}
	if f.dynamic, err = dynamic.NewForConfig(w); err != nil {
		return nil, err
	}
	return &Clients{core: core, Informers: f}, nil
}

// restClient is a client of one API group version; proto asks for
// Kubernetes' protobuf encoding: a kubelet's Node in protobuf is a fifth
// smaller than in JSON and decodes five times faster (BenchmarkNodeDecode),
// and at thousands of Nodes every kubelet's status update reaches every
// agent. Custom resources have no protobuf.
func restClient(cfg *rest.Config, gv schema.GroupVersion, proto bool) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = codecs.WithoutConversion()
	if proto {
		c.ContentType = "application/vnd.kubernetes.protobuf"
		c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	return rest.RESTClientFor(c)
}

// GetNode reads the Node named name.
func (c *Clients) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{}
	return n, c.core.Get().Resource("nodes").Name(name).Do(ctx).Into(n)
}

// PatchNode patches the Node named name: its object with a JSON merge
// patch, or (status) its status with a strategic merge patch, which merges
// conditions by type where a merge patch would replace the whole list.
func (c *Clients) PatchNode(ctx context.Context, name string, status bool, patch []byte) error {
	if status {
		return c.core.Patch(types.StrategicMergePatchType).Resource("nodes").Name(name).SubResource("status").Body(patch).Do(ctx).Error()
	}
	return c.core.Patch(types.MergePatchType).Resource("nodes").Name(name).Body(patch).Do(ctx).Error()
}

// GetPod reads one Pod.
func (c *Clients) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	return p, c.core.Get().Namespace(ns).Resource("pods").Name(name).Do(ctx).Into(p)
}

// CreateSecret creates s; an existing one is an error apierrors.IsAlreadyExists knows.
func (c *Clients) CreateSecret(ctx context.Context, s *corev1.Secret) error {
	return c.core.Post().Namespace(s.Namespace).Resource("secrets").Body(s).Do(ctx).Error()
}

// Ready asks the API server's /readyz.
func (c *Clients) Ready(ctx context.Context) error {
	return c.core.Get().AbsPath("/readyz").Do(ctx).Error()
}

// Serves reports whether the API server serves resource in gv (e.g.
// "weft.dev/v1alpha1", "peers"); err is set when it could not be asked.
func (c *Clients) Serves(ctx context.Context, gv schema.GroupVersion, resource string) (bool, error) {
	var list metav1.APIResourceList
	b, err := c.core.Get().AbsPath("/apis", gv.Group, gv.Version).Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return false, fmt.Errorf("resources of %s: %w", gv, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == resource }), nil
}

// Events is the sink for a record.EventBroadcaster: each Event goes to its
// own namespace.
func (c *Clients) Events() record.EventSink { return eventSink{c.core} }

type eventSink struct{ rc *rest.RESTClient }

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(context.TODO()).Into(out)
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(context.TODO()).Into(out)
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).Body(data).Do(context.TODO()).Into(out)
}

// Informers holds the agent's informers, one per kind, each made when it
// is first asked for and started by the next Start; Shutdown stops them
// all and waits.
type Informers struct {
	core, networking, cnp *rest.RESTClient
	dynamic               dynamic.Interface

	mu       sync.Mutex
	infs     map[string]cache.SharedIndexInformer
	started  map[string]bool
	wg       sync.WaitGroup
	stopping bool
}

// informer is kind's informer, made on first ask; transform (if any) is
// what its store keeps of each object, set before anyone can start it.
func (f *Informers) informer(kind string, lw cache.ListerWatcher, obj runtime.Object, transform cache.TransformFunc) cache.SharedIndexInformer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.infs[kind]; ok {
		return inf
	}
	inf := cache.NewSharedIndexInformer(lw, obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if transform != nil {
		_ = inf.SetTransform(transform) // fails only on a started informer
	}
	f.infs[kind] = inf
	return inf
}

// listWatch lists and watches resource through rc, decoding lists into
// what newList returns.
func listWatch(rc *rest.RESTClient, resource string, newList func() runtime.Object) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			out := newList()
			return out, rc.Get().Resource(resource).VersionedParams(&opts, params).Do(ctx).Into(out)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			return rc.Get().Resource(resource).VersionedParams(&opts, params).Watch(ctx)
		},
	}
}

// Nodes is the Node informer; its store keeps a *Node of each (slimNode),
// whoever asks for it first.
func (f *Informers) Nodes() cache.SharedIndexInformer {
	return f.informer("nodes", listWatch(f.core, "nodes", func() runtime.Object { return &corev1.NodeList{} }), &corev1.Node{}, slimNode)
}

// Pods is the Pod informer.
func (f *Informers) Pods() cache.SharedIndexInformer {
	return f.informer("pods", listWatch(f.core, "pods", func() runtime.Object { return &corev1.PodList{} }), &corev1.Pod{}, nil)
}

// Namespaces is the Namespace informer.
func (f *Informers) Namespaces() cache.SharedIndexInformer {
	return f.informer("namespaces", listWatch(f.core, "namespaces", func() runtime.Object { return &corev1.NamespaceList{} }), &corev1.Namespace{}, nil)
}

// NetworkPolicies is the NetworkPolicy informer.
func (f *Informers) NetworkPolicies() cache.SharedIndexInformer {
	return f.informer("networkpolicies", listWatch(f.networking, "networkpolicies", func() runtime.Object { return &networkingv1.NetworkPolicyList{} }), &networkingv1.NetworkPolicy{}, nil)
}

// ClusterNetworkPolicies is the ClusterNetworkPolicy informer.
func (f *Informers) ClusterNetworkPolicies() cache.SharedIndexInformer {
	return f.informer("clusternetworkpolicies", listWatch(f.cnp, "clusternetworkpolicies", func() runtime.Object { return &cnp.ClusterNetworkPolicyList{} }), &cnp.ClusterNetworkPolicy{}, nil)
}

// Peers is the informer of weft.dev Peer objects (unstructured: the agent
// judges each one itself).
func (f *Informers) Peers() cache.SharedIndexInformer {
	r := f.dynamic.Resource(PeerGVR)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return r.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return r.Watch(ctx, opts)
		},
	}
	return f.informer("peers", lw, &unstructured.Unstructured{}, nil)
}

// Start starts the informers not yet started; they stop when stop closes.
func (f *Informers) Start(stop <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return
	}
	for kind, inf := range f.infs {
		if f.started[kind] {
			continue
		}
		f.started[kind] = true
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			inf.Run(stop)
		}()
	}
}

// Shutdown waits for the started informers to stop (their stop channel
// closed) and starts no more.
func (f *Informers) Shutdown() {
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
	f.wg.Wait()
}
