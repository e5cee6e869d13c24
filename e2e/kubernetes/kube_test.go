package kubernetes

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/peer"
)

// TestKubeMeshConverges: three agents learn identity and peers from the API
// server and gossip; each publishes its annotations and NetworkUnavailable=False;
// a fourth node added later joins every peer list; a deleted Node disappears
// from every peer list and its routes go within 5 s.
func TestKubeMeshConverges(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)

	for _, n := range k.Lab.Nodes() {
		obj := k.Node(n.Name)
		key, err := wgtypes.ParseKey(obj.Annotations[api.AnnotationPublicKey])
		if err != nil {
			t.Fatalf("%s: public-key annotation: %v", n.Name, err)
		}
		if obj.Annotations[api.AnnotationEndpoint] != n.Addr.String()+":51820" || obj.Annotations[api.AnnotationGossipAddress] != n.Addr.String()+":7946" {
			t.Errorf("%s annotations: %v", n.Name, obj.Annotations)
		}
		other := k.Lab.Nodes()[n.Index%3]
		if got := labtest.PeerKey(t, k.Cluster, other, n.Name); got != key.String() {
			t.Errorf("%s knows %s by key %s, the Node says %s", other.Name, n.Name, got, key)
		}
		cond := findCondition(obj, corev1.NodeNetworkUnavailable)
		if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != api.ConditionReason {
			t.Errorf("%s NetworkUnavailable condition = %+v", n.Name, cond)
		}
		ps, _ := k.Peers(n)
		for _, p := range ps {
			if p.Source != string(peer.SourceKubernetes) {
				t.Errorf("%s's peer %s comes from %q, want kubernetes", n.Name, p.Name, p.Source)
			}
		}
	}

	// A fourth node joins later.
	created := time.Now()
	n4 := k.AddNode()
	k.StartKube(n4)
	labtest.WaitPing(t, k.Lab.Nodes()[0], api.FirstAddress(n4.PodCIDRs[0]), 30*time.Second)
	t.Logf("node4: %v from Node creation to the first packet from node1 to its pod range", time.Since(created).Round(10*time.Millisecond))
	k.WaitMesh(30 * time.Second)

	// Deleting a Node removes it everywhere within 5 s, although its agent
	// still runs and gossips (a gossip-only node is not a peer while the API answers).
	n3 := k.Lab.Nodes()[2]
	if err := k.Cp.Admin.CoreV1().Nodes().Delete(context.Background(), n3.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, n := range k.Lab.Nodes() {
		if n == n3 {
			continue
		}
		labtest.Eventually(t, 5*time.Second-time.Since(start), n.Name+" drops deleted node3", func() bool {
			names := labtest.PeerNames(t, k.Cluster, n)
			return names != nil && !slices.Contains(names, "node3")
		})
		for _, r := range labtest.WeftRoutes(t, n) {
			if strings.HasPrefix(r, "10.244.3.") || strings.HasPrefix(r, "fd00:10:244:3:") {
				t.Errorf("%s kept a route to the deleted node's pods: %s", n.Name, r)
			}
		}
	}
	t.Logf("deleted Node gone from every peer list after %v", time.Since(start).Round(10*time.Millisecond))
}

func findCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// TestKubeAPIServerOutage: with the API server stopped, traffic keeps
// flowing, and an agent restarted meanwhile comes back from its cached state.
func TestKubeAPIServerOutage(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)
	n1, n2 := k.Lab.Nodes()[0], k.Lab.Nodes()[1]
	dst := api.FirstAddress(n2.PodCIDRs[0])

	k.StopAPIServer(n1)
	labtest.WaitPing(t, n1, dst, 2*time.Second)

	k.Agents[n2.Name].Kill()
	start := time.Now()
	k.StartKube(n2)
	labtest.WaitPing(t, n1, dst, 10*time.Second)
	t.Logf("restarted node2 reachable %v after restart, API server still down", time.Since(start).Round(10*time.Millisecond))
	if !strings.Contains(k.Agents[n2.Name].Output(), "starting from the cached Node") {
		t.Errorf("node2 did not start from its cached Node:\n%s", labtest.Tail(k.Agents[n2.Name].Output(), 20))
	}
	for _, to := range k.Lab.Nodes() {
		if to != n2 {
			labtest.WaitPing(t, n2, api.FirstAddress(to.PodCIDRs[1]), 5*time.Second)
		}
	}

	k.StartAPIServer()
	labtest.Eventually(t, 20*time.Second, "node2's peers come from Node objects again", func() bool {
		ps, err := k.Peers(n2)
		if err != nil || len(ps) != 2 {
			return false
		}
		for _, p := range ps {
			if p.Source != string(peer.SourceKubernetes) {
				return false
			}
		}
		return true
	})
}

// TestKubeRefusesHostileAnnotations: Nodes whose weft annotations are
// invalid, oversized, point at another node's address or claim another
// node's range are refused by every agent, each with a Warning Event on the
// Node, and never installed; gossip contradicting a Node is ignored.
func TestKubeRefusesHostileAnnotations(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	n1 := k.Lab.Nodes()[0]
	good, _ := wgtypes.GenerateKey()
	goodKey := good.PublicKey().String()
	ctx := context.Background()
	cases := []struct {
		name        string
		annotations map[string]string
		cidrs       []string
		reason      string
		detail      string
	}{
		{"bad-key", map[string]string{api.AnnotationPublicKey: "not-a-key", api.AnnotationEndpoint: "10.99.0.101:51820"}, nil, string(peer.ReasonInvalid), "public key"},
		{"hostname-endpoint", map[string]string{api.AnnotationPublicKey: goodKey, api.AnnotationEndpoint: "evil.example.com:51820"}, nil, string(peer.ReasonInvalid), "want ip:port"},
		{"redirect", map[string]string{api.AnnotationPublicKey: goodKey, api.AnnotationEndpoint: n1.Addr.String() + ":51820"}, nil, string(peer.ReasonInvalid), "not one of the Node's addresses"},
		{"oversized", map[string]string{api.AnnotationPublicKey: strings.Repeat("A", 300), api.AnnotationEndpoint: "10.99.0.101:51820"}, nil, string(peer.ReasonInvalid), "over 256"},
		{"gossip-garbage", map[string]string{api.AnnotationPublicKey: goodKey, api.AnnotationEndpoint: "10.99.0.101:51820", api.AnnotationGossipAddress: "[::1"}, nil, string(peer.ReasonInvalid), "gossip-address"},
		{"steals-range", map[string]string{api.AnnotationPublicKey: goodKey, api.AnnotationEndpoint: "10.99.0.101:51820"}, []string{n1.PodCIDRs[0].String()}, string(peer.ReasonCIDROverlap), "overlaps 10.244.1.0/24 of node1"},
		{"whole-internet", map[string]string{api.AnnotationPublicKey: goodKey, api.AnnotationEndpoint: "10.99.0.101:51820"}, []string{"0.0.0.0/0"}, string(peer.ReasonInvalid), "too large"},
	}
	for i, tc := range cases {
		cidrs := tc.cidrs
		if cidrs == nil {
			cidrs = []string{fmt.Sprintf("10.244.%d.0/24", 100+i)}
		}
		// As a kubelet registers and a tenant then edits: Node, addresses, annotations.
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "evil-" + tc.name},
			Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs}}
		created, err := k.Cp.Admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", node.Name, err)
		}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.99.0.101"}}
		if created, err = k.Cp.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		created.Annotations = tc.annotations
		if _, err := k.Cp.Admin.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases {
		name := "evil-" + tc.name
		t.Run(tc.name, func(t *testing.T) {
			labtest.Eventually(t, 10*time.Second, "a Warning Event on "+name, func() bool {
				evs, err := k.Cp.Admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
				if err != nil {
					return false
				}
				for _, e := range evs.Items {
					if e.Type == corev1.EventTypeWarning && e.Reason == "WeftPeerRefused" && strings.Contains(e.Message, "("+tc.reason+")") && strings.Contains(e.Message, tc.detail) {
						t.Logf("event: %s", e.Message)
						return true
					}
				}
				return false
			})
			for _, n := range k.Lab.Nodes() {
				if slices.Contains(labtest.PeerNames(t, k.Cluster, n), name) {
					t.Errorf("%s installed %s", n.Name, name)
				}
			}
		})
	}
	if got := k.Metric(n1, `weft_peer_rejections_total{reason="invalid"}`); got < 6 {
		t.Errorf("node1 counted %v invalid Nodes, want at least 6", got)
	}
	// The mesh itself is untouched.
	labtest.WaitPing(t, n1, api.FirstAddress(k.Lab.Nodes()[1].PodCIDRs[0]), 5*time.Second)

	// Gossip contradicting a Node: a standalone agent calls itself node3 and
	// gossips a key and range the Node object does not have.
	n3 := k.AddNode()
	nodeKey, _ := wgtypes.GenerateKey()
	obj := k.Node(n3.Name)
	obj.Annotations = map[string]string{api.AnnotationPublicKey: nodeKey.PublicKey().String(),
		api.AnnotationEndpoint: n3.Addr.String() + ":51820", api.AnnotationGossipAddress: n3.Addr.String() + ":7946"}
	if _, err := k.Cp.Admin.CoreV1().Nodes().Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := n3.Start(filepath.Join(k.Bins, "weft-agent"), "--node-name", n3.Name, "--pod-cidr", "10.244.3.0/24",
		"--advertise-address", n3.Addr.String(), "--join", n1.Addr.String(), "--gossip-key-file", k.GossipKey,
		"--state-dir", n3.StateDir, "--cni-conf-dir", n3.CNIConfDir, "--http-addr", netlab.AgentHTTP)
	if err != nil {
		t.Fatal(err)
	}
	k.Agents["impostor"] = p
	labtest.Eventually(t, 15*time.Second, "node1 counts the contradiction", func() bool {
		return k.Metric(n1, `weft_peer_rejections_total{reason="gossip-contradicts-node"}`) >= 1
	})
	if got := labtest.PeerKey(t, k.Cluster, n1, n3.Name); got != nodeKey.PublicKey().String() {
		t.Errorf("node1 took node3's key %s from gossip; the Node says %s", got, nodeKey.PublicKey())
	}
}

// TestKubeProvisionalGossipNode: while the API server is down, a node that
// only gossip announces (its range overlapping no known node) is added
// provisionally and traffic reaches it; once the API answers again and has no
// such Node, it is dropped.
func TestKubeProvisionalGossipNode(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	n1 := k.Lab.Nodes()[0]
	k.StopAPIServer(n1)

	n3, err := k.Lab.AddNode("node3") // no Node object: only gossip knows it
	if err != nil {
		t.Fatal(err)
	}
	k.Start(n3) // standalone agent, same gossip key, joins node1
	labtest.Eventually(t, 20*time.Second, "node1 takes node3 provisionally", func() bool {
		ps, err := k.Peers(n1)
		if err != nil {
			return false
		}
		for _, p := range ps {
			if p.Name == "node3" && p.Source == string(peer.SourceProvisional) {
				return true
			}
		}
		return false
	})
	labtest.WaitPing(t, n1, api.FirstAddress(n3.PodCIDRs[0]), 10*time.Second)

	k.StartAPIServer()
	labtest.Eventually(t, 20*time.Second, "node1 drops node3, which has no Node", func() bool {
		names := labtest.PeerNames(t, k.Cluster, n1)
		return names != nil && !slices.Contains(names, "node3")
	})
	if got := k.Metric(n1, `weft_peer_rejections_total{reason="not-a-node"}`); got < 1 {
		t.Errorf("not-a-node rejections = %v", got)
	}
}
