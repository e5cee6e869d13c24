package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/api"
)

// slimNode keeps of a Node only what weft reads (name, UID, labels,
// weft's own annotations, pod CIDRs, addresses): a kubelet's Node carries
// its image list, conditions and managed fields, tens of kilobytes each,
// which at a thousand Nodes would be most of the agent's memory, and other
// components' annotations (a CSI driver's, the cloud provider's) that weft
// never reads. Labels stay whole: a ClusterNetworkPolicy's nodes peer may
// select on any of them.
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
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			Labels: n.Labels, Annotations: ann},
		Spec:   corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}
