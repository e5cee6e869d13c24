package kubernetes

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
)

// TestNodeAgentWritesOnlyItsOwnNode: with the shipped admission policy on
// the lab's real API server, node1's agent identity (the token a kubelet
// projects into its pod) cannot rewrite node2's public key, endpoint or
// condition, nor its own Node's labels, spec or other annotations; it can
// still publish its own weft.dev annotations and condition (the mesh forms
// under the policy). A token not bound to a node may write nothing.
func TestNodeAgentWritesOnlyItsOwnNode(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	n1, n2 := k.Lab.Nodes()[0], k.Lab.Nodes()[1]
	ctx := context.Background()
	client := func(path string) kubernetes.Interface {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Dial = n1.Dial
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	node1 := client(filepath.Join(n1.Dir, "kubeconfig"))
	unbound := filepath.Join(n1.Dir, "unbound.kubeconfig")
	if err := k.Cp.Kubeconfig(ctx, "weft-system", "weft", unbound); err != nil {
		t.Fatal(err)
	}
	// The API server loads a new admission policy asynchronously: wait until
	// it is in force (a dry run with the unbound token, which the policy
	// denies and which changes nothing), as an operator would after install.
	start := time.Now()
	labtest.Eventually(t, 60*time.Second, "the admission policy is in force", func() bool {
		_, err := client(unbound).CoreV1().Nodes().Patch(ctx, n1.Name, types.StrategicMergePatchType,
			[]byte(`{"metadata":{"annotations":{"weft.dev/probe":"x"}}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "weft-node-writes")
	})
	t.Logf("admission policy in force %v after the check began", time.Since(start).Round(100*time.Millisecond))
	before, err := k.Cp.Admin.CoreV1().Nodes().Get(ctx, n2.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	own, err := k.Cp.Admin.CoreV1().Nodes().Get(ctx, n1.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stolenKey := own.Annotations[api.AnnotationPublicKey] // node1 points node2's traffic at itself

	meta := func(m map[string]any) []byte { b, _ := json.Marshal(map[string]any{"metadata": m}); return b }
	cond := func(typ, status string) []byte {
		b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
			"type": typ, "status": status, "reason": "Test", "lastHeartbeatTime": time.Now().UTC().Format(time.RFC3339),
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}}})
		return b
	}
	type write struct {
		name   string
		cs     kubernetes.Interface
		node   string
		status bool
		patch  []byte
		allow  bool
	}
	cases := []write{
		{"another node's public key", node1, n2.Name, false, meta(map[string]any{"annotations": map[string]string{api.AnnotationPublicKey: stolenKey}}), false},
		{"another node's endpoint", node1, n2.Name, false, meta(map[string]any{"annotations": map[string]string{api.AnnotationEndpoint: n1.Addr.String() + ":51820"}}), false},
		{"another node's condition", node1, n2.Name, true, cond("NetworkUnavailable", "True"), false},
		{"its own label", node1, n1.Name, false, meta(map[string]any{"labels": map[string]string{"node-role.kubernetes.io/control-plane": ""}}), false},
		{"its own other annotation", node1, n1.Name, false, meta(map[string]any{"annotations": map[string]string{"example.com/x": "y"}}), false},
		{"its own spec", node1, n1.Name, false, []byte(`{"spec":{"unschedulable":true}}`), false},
		{"its own Ready condition", node1, n1.Name, true, cond("Ready", "False"), false},
		{"its own weft annotation", node1, n1.Name, false, meta(map[string]any{"annotations": map[string]string{api.AnnotationEndpoint: n1.Addr.String() + ":51820"}}), true},
		{"its own NetworkUnavailable condition", node1, n1.Name, true, cond("NetworkUnavailable", "False"), true},
		{"an unbound token, any node", client(unbound), n1.Name, false, meta(map[string]any{"annotations": map[string]string{api.AnnotationEndpoint: n1.Addr.String() + ":51820"}}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.cs.CoreV1().Nodes()
			var err error
			if tc.status {
				_, err = nodes.PatchStatus(ctx, tc.node, tc.patch)
			} else {
				_, err = nodes.Patch(ctx, tc.node, types.StrategicMergePatchType, tc.patch, metav1.PatchOptions{})
			}
			switch {
			case tc.allow && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.allow && err == nil:
				t.Fatal("allowed; want it refused by the admission policy")
			case !tc.allow && !(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) || !tc.allow && !strings.Contains(err.Error(), "weft-node-writes"):
				t.Fatalf("refused, but not by weft's policy: %v", err)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
	after, err := k.Cp.Admin.CoreV1().Nodes().Get(ctx, n2.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Annotations[api.AnnotationPublicKey] != before.Annotations[api.AnnotationPublicKey] {
		t.Error("node2's public key changed")
	}
	k.WaitMesh(10 * time.Second)
}

// TestGossipCannotMoveANodeEndpoint: in Kubernetes mode a gossip key holder
// announcing an existing Node (its name, public key and pod CIDRs, taken
// from that node) from another address cannot move the Node's endpoint
// there: the endpoint must be one of the Node's own addresses, as for the
// annotation. Before the fix gossip could move it anywhere.
func TestGossipCannotMoveANodeEndpoint(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	n1, n2 := k.Lab.Nodes()[0], k.Lab.Nodes()[1]
	rogue, err := k.Lab.AddNode("rogue")
	if err != nil {
		t.Fatal(err)
	}
	// node2's gossip member dies (its Node and data plane stay); memberlist
	// lets another address take a dead member's name after its reclaim
	// time (5 s in weft).
	labtest.Eventually(t, 30*time.Second, "node1 and node2 gossip", func() bool { return k.Metric(n1, "weft_gossip_members") == 2 })
	k.Agents[n2.Name].Kill()
	// Kubernetes mode probes every 5 s and suspects for 20 s (4 probe
	// intervals) before it declares a member dead: ~25 s.
	killed := time.Now()
	labtest.Eventually(t, 60*time.Second, "node1 sees node2's gossip member dead", func() bool { return k.Metric(n1, "weft_gossip_members") == 1 })
	t.Logf("node1 saw node2's gossip member dead %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(6 * time.Second)
	key, err := os.ReadFile(filepath.Join(n2.StateDir, "private.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rogue.StateDir, "private.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	var cidrs []string
	for _, p := range n2.PodCIDRs {
		cidrs = append(cidrs, p.String())
	}
	p, err := rogue.Start(filepath.Join(k.Bins, "weft-agent"), "--node-name", n2.Name, "--pod-cidr", strings.Join(cidrs, ","),
		"--advertise-address", rogue.Addr.String(), "--join", n1.Addr.String(), "--gossip-key-file", k.GossipKey,
		"--state-dir", rogue.StateDir, "--cni-conf-dir", rogue.CNIConfDir, "--http-addr", "127.0.0.1:9587")
	if err != nil {
		t.Fatal(err)
	}
	k.Agents["rogue"] = p
	labtest.Eventually(t, 40*time.Second, "node1 refuses the gossip claim", func() bool {
		return k.Metric(n1, `weft_peer_rejections_total{reason="gossip-contradicts-node"}`) >= 1
	})
	ps, err := k.Peers(n1)
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint weft writes for node2 stays node2's own. (The rogue
	// also holds node2's WireGuard key, so WireGuard itself roams to it on
	// each of its handshakes; node2 is not --behind-nat, so every
	// reconcile writes node2's own endpoint back.)
	for _, p := range ps {
		if p.Name == n2.Name && p.AnnouncedEndpoint != n2.Addr.String()+":51820" {
			t.Errorf("node1 announces node2 at %s; want node2's own %s:51820", p.AnnouncedEndpoint, n2.Addr)
		}
	}
}
