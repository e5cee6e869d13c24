package kubeclient

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/peer"
)

// kubeletNode is a Node as a kubelet keeps it: conditions, capacity, the
// images it holds, managed fields.
func kubeletNode() *corev1.Node {
	n := &corev1.Node{
		TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "worker-0421", UID: "0b6f8a1e-2f4c-4c1b-9a51-7d1c0e7f3a21", ResourceVersion: "18273645",
			CreationTimestamp: metav1.Date(2026, 3, 9, 14, 2, 11, 0, time.UTC),
			Labels: map[string]string{"kubernetes.io/hostname": "worker-0421", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"topology.kubernetes.io/zone": "rack-17", "node.kubernetes.io/instance-type": "metal"},
			Annotations: map[string]string{"weft.dev/public-key": "hG0pdqM3uAV0m8Lz2nS9x0XbE9kqLk6WmF0p1rj2Y2I=", "weft.dev/endpoint": "10.97.1.22:51820",
				"weft.dev/gossip-address": "10.97.1.22:7946", "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.17.0/24", PodCIDRs: []string{"10.244.17.0/24"}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.97.1.22"}, {Type: corev1.NodeHostName, Address: "worker-0421"}},
			Capacity:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("263844304Ki"), corev1.ResourcePods: resource.MustParse("110")},
			NodeInfo:  corev1.NodeSystemInfo{KernelVersion: "6.1.0-28-amd64", OSImage: "Debian GNU/Linux 12 (bookworm)", ContainerRuntimeVersion: "containerd://1.7.24", KubeletVersion: "v1.34.4"},
		},
	}
	n.Status.Allocatable = n.Status.Capacity
	for _, c := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: corev1.ConditionFalse,
			Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()})
	}
	for i := range 40 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example.com/team-%d/service@sha256:%064x", i, i*7919), fmt.Sprintf("registry.example.com/team-%d/service:v1.%d.3", i, i)},
			SizeBytes: int64(40_000_000 + i*1_000_003)})
	}
	for _, m := range []string{"kubelet", "kube-controller-manager", "weft-agent"} {
		n.ManagedFields = append(n.ManagedFields, metav1.ManagedFieldsEntry{Manager: m, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			Time: &metav1.Time{}, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:annotations":{".":{},"f:node.alpha.kubernetes.io/ttl":{}},"f:labels":{".":{},"f:kubernetes.io/hostname":{}}},"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{"f:lastHeartbeatTime":{}}}}}`)})
	}
	return n
}

// BenchmarkNodeDecode is what one Node event costs an agent's watch in
// each encoding: the bytes it reads (wire-B/op) and the decoding.
func BenchmarkNodeDecode(b *testing.B) {
	for _, mt := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mt)
		if !ok {
			b.Fatalf("no serializer for %s", mt)
		}
		wire, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), kubeletNode())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(mt, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := info.Serializer.Decode(wire, nil, &corev1.Node{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(wire)), "wire-B/op")
		})
	}
}

// TestSlimNodeKeepsWhatWeftReads: the informer's copy of a kubelet's Node
// keeps the name, UID, labels (a ClusterNetworkPolicy may select on any),
// weft's annotations, pod CIDRs and addresses, and drops the rest: other
// components' annotations, conditions, capacity, images.
func TestSlimNodeKeepsWhatWeftReads(t *testing.T) {
	n := kubeletNode()
	obj, err := slimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*Node)
	if s.Name != n.Name || s.UID != n.UID || len(s.Labels) != len(n.Labels) || s.Labels["topology.kubernetes.io/zone"] != "rack-17" {
		t.Errorf("name, UID or labels lost: %+v", s)
	}
	want := map[string]string{}
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, "weft.dev/") {
			want[k] = v
		}
	}
	if len(want) == 0 || len(want) == len(n.Annotations) {
		t.Fatalf("the test Node needs weft's annotations and others: %v", n.Annotations)
	}
	if !maps.Equal(s.Annotations, want) {
		t.Errorf("annotations kept %v, want only weft's %v", s.Annotations, want)
	}
	if !slices.Equal(s.PodCIDRs, n.Spec.PodCIDRs) || !slices.Equal(s.Addresses, n.Status.Addresses) {
		t.Errorf("pod CIDRs %v or addresses %v lost", s.PodCIDRs, s.Addresses)
	}
	// What peer reads of it is what it would read of the kubelet's Node.
	for _, label := range []string{"", "topology.kubernetes.io/zone"} {
		want, wantHas, wantErr := peer.NodeInfoFromNode(n, label)
		if !wantHas || wantErr != nil {
			t.Fatalf("the test Node must be a peer: %v %v", wantHas, wantErr)
		}
		got, has, err := peer.NodeInfoFromNode(s.Core(), label)
		if !reflect.DeepEqual(got, want) || has != wantHas || (err == nil) != (wantErr == nil) {
			t.Errorf("label %q: read from the kept Node %+v %v %v, from the kubelet's %+v %v %v", label, got, has, err, want, wantHas, wantErr)
		}
	}
	// Again through the transform: a Node passes unchanged.
	if again, _ := slimNode(s); again != any(s) {
		t.Error("slimNode changed a Node it had made")
	}
	// The informer keys it by name.
	if key, err := cache.MetaNamespaceKeyFunc(s); err != nil || key != n.Name {
		t.Errorf("key %q, %v; want %q", key, err, n.Name)
	}
}

// TestSlimNodeTakesTheSinglePodCIDR: a Node with only spec.podCIDR (an
// older control plane) keeps it as its one pod CIDR.
func TestSlimNodeTakesTheSinglePodCIDR(t *testing.T) {
	n := kubeletNode()
	n.Spec.PodCIDRs, n.Spec.PodCIDR = nil, "10.244.7.0/24"
	obj, _ := slimNode(n)
	if got := obj.(*Node).PodCIDRs; !slices.Equal(got, []string{"10.244.7.0/24"}) {
		t.Errorf("pod CIDRs %v, want [10.244.7.0/24]", got)
	}
}
