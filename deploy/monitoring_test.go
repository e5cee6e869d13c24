package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// tool is the program an environment variable names; make test builds it.
func tool(t *testing.T, env, what string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		if testing.Short() {
			t.Skipf("needs %s: run make test", what)
		}
		t.Fatalf("%s is not set: run through make test, which builds %s", env, what)
	}
	return p
}

// TestAlertRules: promtool (built from tools/prometheus) accepts the alert
// file and passes its unit tests: each alert fires on its problem, stays
// silent on a healthy neighbour and clears.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "WEFT_PROMTOOL", "promtool from tools/prometheus")
	for _, args := range [][]string{
		{"check", "rules", "helm/weft/files/alerts.yaml"},
		{"test", "rules", "monitoring/alerts-test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), bytes.TrimSpace(out))
	}
}

// TestChartMonitoring: with the monitoring values on, the chart renders
// the ServiceMonitor, a PrometheusRule holding exactly the tested alert
// file, and the dashboards' ConfigMap with every generated dashboard.
func TestChartMonitoring(t *testing.T) {
	helm := tool(t, "WEFT_HELM", "Helm from tools/helm")
	out, err := exec.Command(helm, "template", "weft", "helm/weft", "--set", "monitoring.serviceMonitor.enabled=true",
		"--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.dashboards.enabled=true").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	kinds := map[string]map[string]any{}
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if k, ok := obj["kind"].(string); ok {
			kinds[k] = obj
		}
	}
	for _, k := range []string{"ServiceMonitor", "PrometheusRule", "ConfigMap", "Service"} {
		if kinds[k] == nil {
			t.Fatalf("no %s rendered", k)
		}
	}
	raw, err := os.ReadFile("helm/weft/files/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var alerts map[string]any
	if err := yaml.Unmarshal(raw, &alerts); err != nil {
		t.Fatal(err)
	}
	if spec := kinds["PrometheusRule"]["spec"]; !reflect.DeepEqual(spec, alerts) {
		t.Errorf("the PrometheusRule's spec is not files/alerts.yaml")
	}
	data, _ := kinds["ConfigMap"]["data"].(map[string]any)
	files, _ := filepath.Glob("helm/weft/files/dashboards/*.json")
	if len(files) == 0 || len(data) != len(files) {
		t.Fatalf("the ConfigMap holds %d dashboards, the chart %d", len(data), len(files))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		// The last block scalar of the stream loses its final newline.
		if got, _ := data[filepath.Base(f)].(string); strings.TrimSuffix(got, "\n") != strings.TrimSuffix(string(want), "\n") {
			t.Errorf("the ConfigMap's %s is not the generated dashboard", filepath.Base(f))
		}
	}
}
