package peer

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/api"
)

func kubeNode(ann map[string]string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2", Annotations: ann}}
	n.Spec.PodCIDRs = cidrs
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.99.0.12"}}
	return n
}

func TestNodeInfoFromNode(t *testing.T) {
	key := pubKey(t).String()
	good := map[string]string{api.AnnotationPublicKey: key, api.AnnotationEndpoint: "10.99.0.12:51820", api.AnnotationGossipAddress: "10.99.0.12:7946"}
	info, ok, err := NodeInfoFromNode(kubeNode(good, "10.244.2.0/24"), api.DefaultTopologyLabel)
	if err != nil || !ok || info.Name != "node2" || info.PublicKey.String() != key || info.Endpoint.String() != "10.99.0.12:51820" ||
		info.GossipAddr.String() != "10.99.0.12:7946" || len(info.PodCIDRs) != 1 || info.PodCIDRs[0].String() != "10.244.2.0/24" {
		t.Fatalf("good Node: %+v %v %v", info, ok, err)
	}
	if _, ok, err := NodeInfoFromNode(kubeNode(nil, "10.244.2.0/24"), api.DefaultTopologyLabel); ok || err != nil {
		t.Fatalf("a Node without weft annotations is not an error and not a peer: %v %v", ok, err)
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for name, tc := range map[string]struct {
		ann   map[string]string
		cidrs []string
		want  string
	}{
		"bad key":           {with(api.AnnotationPublicKey, "x"), []string{"10.244.2.0/24"}, "public key"},
		"oversized":         {with(api.AnnotationPublicKey, strings.Repeat("A", 300)), []string{"10.244.2.0/24"}, "over 256"},
		"name endpoint":     {with(api.AnnotationEndpoint, "evil.example:51820"), []string{"10.244.2.0/24"}, "want ip:port"},
		"another's address": {with(api.AnnotationEndpoint, "10.99.0.11:51820"), []string{"10.244.2.0/24"}, "not one of the Node's addresses"},
		"gossip elsewhere":  {with(api.AnnotationGossipAddress, "10.99.0.11:7946"), []string{"10.244.2.0/24"}, "not one of the Node's addresses"},
		"no pod CIDR":       {good, nil, "spec.podCIDRs"},
		"default route":     {good, []string{"0.0.0.0/0"}, "too large"},
		"bad location":      {with(api.AnnotationLocation, "a b"), []string{"10.244.2.0/24"}, "weft.dev/location"},
		"long location":     {with(api.AnnotationLocation, strings.Repeat("a", 64)), []string{"10.244.2.0/24"}, "at most 63"},
		"bad intra":         {with(api.AnnotationIntraLocation, "plain"), []string{"10.244.2.0/24"}, "want encrypted or direct"},
	} {
		if _, ok, err := NodeInfoFromNode(kubeNode(tc.ann, tc.cidrs...), api.DefaultTopologyLabel); !ok || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ok %v err %v, want an error containing %q", name, ok, err, tc.want)
		}
	}
}

func TestLocationFromLabelAndAnnotation(t *testing.T) {
	ann := map[string]string{api.AnnotationPublicKey: pubKey(t).String(), api.AnnotationEndpoint: "10.99.0.12:51820",
		api.AnnotationIntraLocation: "direct"}
	n := kubeNode(ann, "10.244.2.0/24")
	n.Labels = map[string]string{api.DefaultTopologyLabel: "zone-a", "site": "berlin"}
	for _, tc := range []struct {
		label, override, want string
	}{
		{api.DefaultTopologyLabel, "", "zone-a"},
		{"site", "", "berlin"},
		{"absent", "", ""},
		{api.DefaultTopologyLabel, "rack-7", "rack-7"}, // the annotation wins
	} {
		delete(n.Annotations, api.AnnotationLocation)
		if tc.override != "" {
			n.Annotations[api.AnnotationLocation] = tc.override
		}
		info, _, err := NodeInfoFromNode(n, tc.label)
		if err != nil || info.Location != tc.want || !info.Direct {
			t.Errorf("label %s, annotation %q: location %q direct %v err %v, want %q direct", tc.label, tc.override, info.Location, info.Direct, err, tc.want)
		}
	}
	delete(n.Annotations, api.AnnotationLocation)
	n.Labels["site"] = "not a label value!"
	if _, _, err := NodeInfoFromNode(n, "site"); err == nil || !strings.Contains(err.Error(), "label site") {
		t.Errorf("an invalid topology label value: %v, want an error naming the label", err)
	}
}

func TestPathIsDirectOnlyWhenBothEndsAgree(t *testing.T) {
	a := NodeInfo{Name: "a", Location: "x", Direct: true}
	for _, tc := range []struct {
		b    NodeInfo
		want PathKind
	}{
		{NodeInfo{Location: "x", Direct: true}, PathDirect},
		{NodeInfo{Location: "x"}, PathEncrypted},               // the other end encrypts
		{NodeInfo{Location: "y", Direct: true}, PathEncrypted}, // another location
		{NodeInfo{Direct: true}, PathEncrypted},                // no location: its own
	} {
		if got, back := Path(a, tc.b), Path(tc.b, a); got != tc.want || back != got {
			t.Errorf("Path(%+v, %+v) = %s (back %s), want %s both ways", a, tc.b, got, back, tc.want)
		}
	}
	if got := Path(NodeInfo{Direct: true}, NodeInfo{Direct: true}); got != PathEncrypted {
		t.Errorf("two nodes without a location: %s, want encrypted", got)
	}
}
