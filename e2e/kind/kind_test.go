//go:build kind

// Package kind is weft's end-to-end suite on a real kind cluster: the image,
// deploy/weft.yaml, pods across nodes, a Service, DNS, a NetworkPolicy and an
// iperf3 run. It needs docker and kind (make e2e-kind); without them it says
// so and skips. It is not part of make test.
package kind

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	cluster = "weft-e2e"
	image   = "ghcr.io/weftnet/weft:0.1.0"
	agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.53"
)

func root() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String())
}

func kubectl(t *testing.T, args ...string) string {
	return run(t, "kubectl", append([]string{"--context", "kind-" + cluster}, args...)...)
}

func TestKind(t *testing.T) {
	for _, tool := range []string{"docker", "kind", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the kind e2e suite needs docker, kind and kubectl", tool)
		}
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no running Docker engine: the kind e2e suite needs one")
	}
	run(t, "kind", "create", "cluster", "--name", cluster, "--config", "deploy/kind/cluster.yaml", "--wait", "0s")
	if os.Getenv("WEFT_KIND_KEEP") == "" {
		t.Cleanup(func() { exec.Command("kind", "delete", "cluster", "--name", cluster).Run() })
	}
	run(t, "docker", "build", "-t", image, ".")
	run(t, "kind", "load", "docker-image", image, "--name", cluster)
	kubectl(t, "apply", "-f", "deploy/weft.yaml")
	kubectl(t, "-n", "weft-system", "rollout", "status", "daemonset/weft", "--timeout=300s")
	kubectl(t, "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=300s")

	nodes := strings.Fields(kubectl(t, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(nodes) < 3 {
		t.Fatalf("nodes: %v", nodes)
	}
	// One agnhost pod per node, a Service over them.
	for i, n := range nodes {
		kubectl(t, "run", fmt.Sprintf("web-%d", i), "--image", agnhost, "--labels", "app=web",
			"--overrides", fmt.Sprintf(`{"spec":{"nodeName":%q,"tolerations":[{"operator":"Exists"}]}}`, n),
			"--", "netexec", "--http-port=8080")
	}
	kubectl(t, "wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=300s")
	kubectl(t, "expose", "pod", "web-0", "--name", "web", "--port", "80", "--target-port", "8080", "--selector", "app=web")

	ips := strings.Fields(kubectl(t, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"))
	t.Run("pod to pod across nodes", func(t *testing.T) {
		for _, ip := range ips {
			out := kubectl(t, "exec", "web-0", "--", "/agnhost", "connect", ip+":8080", "--timeout=5s")
			t.Logf("web-0 -> %s: ok %s", ip, out)
		}
	})
	t.Run("Service and DNS", func(t *testing.T) {
		kubectl(t, "exec", "web-1", "--", "/agnhost", "connect", "web.default.svc.cluster.local:80", "--timeout=5s")
	})
	t.Run("NetworkPolicy", func(t *testing.T) {
		// Needs weft's NetworkPolicy enforcement: a default-deny on app=web
		// must make web-1 unreachable from web-0.
		deny := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny-web"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"]}}`
		cmd := exec.Command("kubectl", "--context", "kind-"+cluster, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(deny)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apply policy: %v %s", err, out)
		}
		time.Sleep(2 * time.Second)
		if err := exec.Command("kubectl", "--context", "kind-"+cluster, "exec", "web-0", "--", "/agnhost", "connect", ips[1]+":8080", "--timeout=3s").Run(); err == nil {
			t.Error("web-0 reached web-1 through a default-deny policy")
		}
		kubectl(t, "delete", "networkpolicy", "deny-web")
	})
	t.Run("iperf3 across nodes", func(t *testing.T) {
		out := run(t, "sh", "bench/k8s/run.sh", nodes[1], nodes[2])
		t.Log("\n" + out)
	})
}
