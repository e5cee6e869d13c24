package kubernetes

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/deploy"
	"github.com/weftnet/weft/internal/labtest"
)

func repoFile(t *testing.T, rel string) []byte {
	t.Helper()
	_, f, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestsAreValid sends every manifest weft ships to the real API
// server with a server-side dry run (schema, defaulting and admission), then
// applies deploy/weft.yaml for real and checks the DaemonSet's contract.
func TestManifestsAreValid(t *testing.T) {
	k := labtest.NewKubeCluster(t, 0) // applies deploy/weft.yaml already
	ctx := context.Background()
	iperf := strings.NewReplacer("SERVER_NODE", "node1", "CLIENT_NODE", "node2", "SERVER_IP", "10.244.1.2", "IPERF3_IMAGE", "weft.local/iperf3:3.12").Replace(string(repoFile(t, "bench/k8s/iperf3.yaml")))
	// A dry run does not create namespaces, and the lab has no controller to
	// create their default ServiceAccount: make both for the bench's pods.
	k.CreateNamespace("weft-bench", nil)
	for name, m := range map[string][]byte{
		"deploy/weft.yaml":       deploy.Manifest,
		"bench/k8s/iperf3.yaml":  []byte(iperf),
		"deploy/helm (rendered)": deploy.Manifest,
	} {
		if err := k.Cp.Apply(ctx, m, true); err != nil {
			t.Errorf("%s: server-side dry run: %v", name, err)
		}
	}
	ds, err := k.Cp.Admin.AppsV1().DaemonSets("weft-system").Get(ctx, "weft", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	agent := spec.Containers[0]
	switch {
	case !spec.HostNetwork:
		t.Error("DaemonSet is not hostNetwork")
	case spec.PriorityClassName != "system-node-critical":
		t.Errorf("priority class %q", spec.PriorityClassName)
	case len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != "Exists" || spec.Tolerations[0].Key != "":
		t.Errorf("tolerations %+v: want one that tolerates every taint", spec.Tolerations)
	case ds.Spec.UpdateStrategy.RollingUpdate == nil || ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge.IntValue() != 1 || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 0:
		t.Errorf("update strategy %+v: want a surge pod beside the old one, none unavailable (the handover)", ds.Spec.UpdateStrategy)
	case len(agent.Ports) != 0:
		t.Errorf("the agent declares ports %v: a host-network pod's ports are host ports, and the surge pod would never be scheduled", agent.Ports)
	case agent.LivenessProbe == nil || agent.LivenessProbe.HTTPGet.Path != "/healthz" || agent.ReadinessProbe == nil || agent.ReadinessProbe.Exec == nil ||
		!slices.Contains(agent.Args, "--ready-file="+agent.ReadinessProbe.Exec.Command[len(agent.ReadinessProbe.Exec.Command)-1]):
		t.Error("probes are not /healthz and the agent's own ready file")
	case agent.Env[0].Name != "NODE_NAME" || agent.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName":
		t.Error("NODE_NAME does not come from the downward API")
	case len(agent.Env) < 2 || agent.Env[1].Name != "GOMEMLIMIT" || agent.Resources.Limits.Memory().IsZero():
		t.Error("no GOMEMLIMIT under a memory limit: wireguard-go's buffer pools outgrow the limit under load")
	case agent.SecurityContext.Privileged != nil && *agent.SecurityContext.Privileged:
		t.Error("the agent runs privileged")
	case len(spec.InitContainers) != 1 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "install-cni"):
		t.Error("no install-cni init container")
	}
}
