package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// agentMayNotImport are client-go's packages that import every built-in
// API group (56 packages of generated types, protobuf and conversions):
// a third of the agent's binary, mapped into every agent's memory. The
// agent reads a few kinds through kubeclient's REST clients instead.
var agentMayNotImport = []string{
	"k8s.io/client-go/kubernetes",
	"k8s.io/client-go/kubernetes/scheme",
	"k8s.io/client-go/informers",
	"k8s.io/client-go/discovery",
	"k8s.io/client-go/dynamic/dynamicinformer",
	"sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned",
}

// agentAPIGroups are the built-in API groups the agent reads.
var agentAPIGroups = []string{"k8s.io/api/core/v1", "k8s.io/api/networking/v1"}

func TestAgentBinaryImportsOnlyTheAPIGroupsItReads(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/weftnet/weft/cmd/weft-agent").Output()
	if err != nil {
		t.Fatalf("go list -deps weft-agent: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range agentMayNotImport {
			if dep == bad {
				t.Errorf("weft-agent depends on %s, which imports every built-in API group", dep)
			}
		}
		if within(dep, "k8s.io/api") && !slices.ContainsFunc(agentAPIGroups, func(g string) bool { return within(dep, g) }) {
			t.Errorf("weft-agent depends on %s; it reads only %v", dep, agentAPIGroups)
		}
	}
}
