package kubeclient

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/api"
)

// Node is what the agent keeps of a Node in its informer (slimNode):
// name, UID, labels (a ClusterNetworkPolicy's nodes peer may select on
// any), weft's own annotations, pod CIDRs and addresses. A kubelet's Node
// also carries its image list, conditions and managed fields, tens of
// kilobytes, and other components' annotations (a CSI driver's, the cloud
// provider's) that weft never reads; and even emptied, a corev1.Node is
// 784 bytes of fields (896 allocated), ~4 MiB at 5000 Nodes, where Node is 112.
type Node struct {
	Name            string
	UID             types.UID
	ResourceVersion string
	Labels          map[string]string
	Annotations     map[string]string // weft's only
	PodCIDRs        []string          // spec.podCIDRs, or spec.podCIDR alone
	Addresses       []corev1.NodeAddress
	Created         metav1.Time // creationTimestamp: gossip tries the oldest Nodes first
}

// GetObjectMeta makes a Node a metav1.ObjectMetaAccessor: the informer
// keys and indexes it by name.
func (n *Node) GetObjectMeta() metav1.Object {
	m := n.meta()
	return &m
}

func (n *Node) meta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels, Annotations: n.Annotations,
		CreationTimestamp: n.Created}
}

// Core is n as a corev1.Node, for peer's parsers (a copy of the fields,
// sharing the maps and slices).
func (n *Node) Core() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: n.meta(),
		Spec:       corev1.NodeSpec{PodCIDRs: n.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: n.Addresses},
	}
}

// slimNode is the Node informer's transform: a corev1.Node becomes a
// *Node (anything else passes as it is, a Node again included).
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	var ann map[string]string
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, api.AnnotationPrefix) {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	return &Node{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels, Annotations: ann,
		PodCIDRs: cidrs, Addresses: n.Status.Addresses, Created: n.CreationTimestamp}, nil
}
