package labtest

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/weftnet/weft/kubeclient"
)

// CreatePeer creates a Peer object once its CRD serves.
func (k *KubeCluster) CreatePeer(name, key string, allowed ...string) {
	k.T.Helper()
	ips := make([]any, len(allowed))
	for i, a := range allowed {
		ips[i] = a
	}
	k.CreatePeerSpec(name, map[string]any{"publicKey": key, "allowedIPs": ips})
}

// CreatePeerSpec creates a Peer object with spec once its CRD serves.
func (k *KubeCluster) CreatePeerSpec(name string, spec map[string]any) {
	k.T.Helper()
	dyn, err := dynamic.NewForConfig(k.Cp.AdminREST)
	if err != nil {
		k.T.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "weft.dev/v1alpha1", "kind": "Peer",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}}
	var last error
	Eventually(k.T, 20*time.Second, "Peer "+name+" created", func() bool {
		_, last = dyn.Resource(kubeclient.PeerGVR).Create(context.Background(), obj, metav1.CreateOptions{})
		return last == nil
	})
}
