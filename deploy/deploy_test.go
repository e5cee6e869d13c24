package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestHelmDefaultsRenderWeftYAML: the chart's default rendering is exactly
// the committed deploy/weft.yaml (run `make manifests` after changing either).
func TestHelmDefaultsRenderWeftYAML(t *testing.T) {
	helm := os.Getenv("WEFT_HELM")
	if helm == "" {
		if testing.Short() {
			t.Skip("needs the Helm CLI from tools/helm: run make test")
		}
		t.Fatal("WEFT_HELM is not set: run through make test, which builds Helm from tools/helm")
	}
	out, err := exec.Command(helm, "template", "weft", "helm/weft").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	if !bytes.Equal(out, Manifest) {
		t.Fatal("deploy/weft.yaml differs from the Helm chart's default rendering: run make manifests")
	}
	if !bytes.Contains(Manifest, []byte("kind: DaemonSet")) || !bytes.Contains(Manifest, []byte("system-node-critical")) {
		t.Fatal("weft.yaml lacks the DaemonSet")
	}
}
