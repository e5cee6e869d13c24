//go:build kind

package kind

import (
	"archive/tar"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
)

// kubectlWeft runs kubectl-weft (built into WEFT_BIN_DIR) against the kind
// cluster, as a user would: only the kubeconfig, no node access.
func kubectlWeft(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(os.Getenv("WEFT_BIN_DIR"), "kubectl-weft")
	if os.Getenv("WEFT_BIN_DIR") == "" {
		t.Fatal("WEFT_BIN_DIR is not set: run through make test-kind")
	}
	return sh(bin, append([]string{"--context", context_}, args...)...)
}

var allNodes = []string{cp, w1, w2}

// kubectlWeftStatus: `kubectl weft status` and `--matrix` show every node
// ready with both peers up, and the JSON form carries each node's traffic
// counters with nothing in the clear.
func kubectlWeftStatus(t *testing.T, pods []pod) {
	// Pod traffic from every node's pod to the next node's, for the counters.
	for i, from := range pods {
		to := pods[(i+1)%len(pods)]
		if _, err := fetch(from, url(to.addr(), 8080, "/clientip")); err != nil {
			t.Fatalf("%s -> %s: %v", from, to, err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the agents' status is at most 1 s old
	out, err := kubectlWeft(t, "status")
	if err != nil {
		t.Fatalf("kubectl weft status: %v\n%s", err, out)
	}
	t.Logf("kubectl weft status:\n%s", out)
	for _, n := range allNodes {
		line := lineOf(out, n+" ")
		if f := strings.Fields(line); len(f) < 4 || f[2] != "yes" || f[3] != "2/0/0" {
			t.Errorf("status line for %s: %q, want ready yes and peers 2/0/0", n, line)
		}
	}
	out, err = kubectlWeft(t, "status", "--matrix")
	if err != nil {
		t.Fatalf("kubectl weft status --matrix: %v\n%s", err, out)
	}
	t.Logf("kubectl weft status --matrix:\n%s", out)
	rows := 0
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) >= 3 && strings.HasPrefix(f[0], "weft-") {
			rows++
			if f[2] != "up" {
				t.Errorf("matrix row %q: want up", l)
			}
		}
	}
	if rows != 6 {
		t.Errorf("the matrix has %d node × peer rows, want 6", rows)
	}
	out, err = kubectlWeft(t, "status", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl weft status -o json: %v", err)
	}
	var reports []struct {
		Node   string      `json:"node"`
		Status *api.Status `json:"status"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &reports); err != nil {
		t.Fatalf("kubectl weft status -o json: %v\n%s", err, out)
	}
	for _, r := range reports {
		if r.Status == nil || r.Status.Node.Traffic == nil {
			t.Errorf("%s: no status or no traffic counters", r.Node)
			continue
		}
		if tr := r.Status.Node.Traffic; tr.Plaintext.Packets != 0 || tr.Tunnel.Packets == 0 {
			t.Errorf("%s's traffic %+v: want pod packets through the tunnel and none in the clear", r.Node, *tr)
		}
	}
}

// kubectlWeftGraphAndRotate: graph and showconf answer through one agent,
// and rotate-key (exec in the agent pod) gives a worker a new key that its
// Node announces and every peer takes: the matrix is all up again.
func kubectlWeftGraphAndRotate(t *testing.T) {
	out, err := kubectlWeft(t, "graph")
	if err != nil {
		t.Fatalf("kubectl weft graph: %v\n%s", err, out)
	}
	for _, n := range allNodes {
		if !strings.Contains(out, n) {
			t.Errorf("kubectl weft graph lacks %s:\n%s", n, out)
		}
	}
	if out, err := kubectlWeft(t, "showconf", "node", w1, "--node", w2); err != nil || !strings.Contains(out, "[Interface]") {
		t.Errorf("kubectl weft showconf node %s: %v\n%s", w1, err, out)
	}
	out, err = kubectlWeft(t, "rotate-key", w1)
	if err != nil {
		t.Fatalf("kubectl weft rotate-key %s: %v\n%s", w1, err, out)
	}
	f := strings.Fields(out) // "new public key KEY"
	key := f[len(f)-1]
	if _, err := base64.StdEncoding.DecodeString(key); err != nil || len(key) != 44 {
		t.Fatalf("kubectl weft rotate-key printed %q, want the new public key", out)
	}
	eventually(t, 60*time.Second, "the new key announced and every session up", func() error {
		if got, _ := kc("get", "node", w1, "-o", "jsonpath={.metadata.annotations.weft\\.dev/public-key}"); got != key {
			return fmt.Errorf("%s's Node announces %q, want %q", w1, got, key)
		}
		out, err := kubectlWeft(t, "status", "--matrix")
		if err != nil {
			return err
		}
		if n := strings.Count(out, " up "); n != 6 {
			return fmt.Errorf("%d of 6 node × peer rows up:\n%s", n, out)
		}
		return nil
	})
}

func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// kubectlWeftSysdump: the tarball holds every node's status, metrics,
// nftables table, WireGuard device, pod and agent log, and the cluster's
// Nodes; no node's private key, no pair's preshared key and not the gossip
// key appear anywhere in it.
func kubectlWeftSysdump(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dump.tar.gz")
	out, err := kubectlWeft(t, "sysdump", "-o", file)
	if err != nil {
		t.Fatalf("kubectl weft sysdump: %v\n%s", err, out)
	}
	t.Log(out)
	files := readTarball(t, file)
	for _, n := range allNodes {
		for name, want := range map[string]string{
			"status.json": `"publicKey"`, "metrics.txt": "weft_pod_packets_total", "nftables.txt": "table inet weft",
			"wireguard.txt": "private key: (hidden)", "pod.yaml": "nodeName: " + n, "logs/agent.log": "agent started",
		} {
			b, ok := files["weft-sysdump/"+n+"/"+name]
			if !ok {
				t.Errorf("the sysdump has no %s/%s", n, name)
			} else if !strings.Contains(string(b), want) {
				t.Errorf("%s/%s does not hold %q", n, name, want)
			}
		}
	}
	if _, ok := files["weft-sysdump/cluster/nodes.yaml"]; !ok {
		t.Error("the sysdump has no cluster/nodes.yaml")
	}
	// The secrets the dump must never hold.
	secrets := map[string]string{}
	for _, n := range allNodes {
		priv := strings.TrimSpace(must(t, "docker", "exec", n, "cat", "/var/lib/weft/private.key"))
		secrets[n+"'s private key"] = priv
		if raw, err := base64.StdEncoding.DecodeString(priv); err == nil {
			secrets[n+"'s private key (hex, as WireGuard's UAPI writes it)"] = hex.EncodeToString(raw)
		}
		var kept struct { // keys.StoreFile
			Keys []struct {
				PSK string `json:"psk"`
			} `json:"keys"`
		}
		if raw, err := sh("docker", "exec", n, "cat", "/var/lib/weft/pair-keys.json"); err == nil {
			json.Unmarshal([]byte(raw), &kept)
			for i, p := range kept.Keys {
				if p.PSK != "" {
					secrets[fmt.Sprintf("%s's preshared key %d", n, i)] = p.PSK
				}
			}
		}
	}
	gossip := kubectl(t, "-n", "weft-system", "get", "secret", "weft-gossip", "-o", "jsonpath={.data}")
	for _, v := range strings.FieldsFunc(gossip, func(r rune) bool { return strings.ContainsRune(`{}":,`, r) }) {
		if len(v) >= 16 {
			secrets["the gossip key (base64 as stored)"] = v
		}
	}
	if len(secrets) < len(allNodes)+1 {
		t.Fatalf("found only %d secrets to look for: the check would prove nothing", len(secrets))
	}
	for what, s := range secrets {
		for name, b := range files {
			if strings.Contains(string(b), s) {
				t.Errorf("%s appears in %s", what, name)
			}
		}
	}
	t.Logf("sysdump: %d files, none holds any of %d secrets", len(files), len(secrets))
}

func readTarball(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	return files
}

// promPort is where the suite's Prometheus listens (loopback only).
const promPort = 19090

// staleHandshakeAlert: a Prometheus server (built from the same module as
// promtool) scrapes every agent with the chart's alert rules. The suite
// blocks WireGuard's port on one worker: the other nodes' handshakes with it
// stop, and WeftPeerHandshakeStale must fire within its window (180 s
// without a handshake, then its for: 1m) — and clear once the port passes
// again.
func staleHandshakeAlert(t *testing.T) {
	prom := os.Getenv("WEFT_PROMETHEUS")
	if prom == "" {
		t.Fatal("WEFT_PROMETHEUS is not set: run through make test-kind, which builds it from tools/prometheus")
	}
	dir := t.TempDir()
	var targets []string
	for _, n := range allNodes {
		targets = append(targets, fmt.Sprintf(`      - targets: ["%s:9587"]
        labels: {instance: %s}`, nodeIP(t, n), n))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - %s
scrape_configs:
  - job_name: weft-agent
    static_configs:
%s
`, filepath.Join(root(), "deploy/helm/weft/files/alerts.yaml"), strings.Join(targets, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", lastLines(string(b), 30))
		}
	}()
	eventually(t, 60*time.Second, "Prometheus scrapes all three agents", func() error {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Health string `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := promGet("/api/v1/targets", &r); err != nil {
			return err
		}
		up := 0
		for _, tg := range r.Data.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("%d of %d targets up", up, len(r.Data.ActiveTargets))
		}
		return nil
	})
	if a := firing(t, "WeftPeerHandshakeStale"); len(a) > 0 {
		t.Fatalf("WeftPeerHandshakeStale fires before anything was blocked: %v", a)
	}
	const block = "weft-e2e-block"
	must(t, "docker", "exec", w2, "nft", "add table inet "+block+"; add chain inet "+block+" in { type filter hook input priority -10 ; } ; add rule inet "+block+" in udp dport 51820 drop")
	unblock := func() { sh("docker", "exec", w2, "nft", "delete", "table", "inet", block) }
	defer unblock()
	blocked := time.Now()
	// The condition holds 180 s after the last handshake (at most 0-120 s
	// before the block, as sessions renew), and for: 1m more.
	fired := eventually(t, 180*time.Second+60*time.Second+90*time.Second, "WeftPeerHandshakeStale fires for the blocked worker", func() error {
		for _, a := range firing(t, "WeftPeerHandshakeStale") {
			if a["peer"] == w2 || a["instance"] == w2 {
				return nil
			}
		}
		return fmt.Errorf("not firing %v after the block", time.Since(blocked).Round(time.Second))
	})
	t.Logf("WeftPeerHandshakeStale fired %v after WireGuard's port was blocked on %s: %v", fired.Round(time.Second), w2, firing(t, "WeftPeerHandshakeStale"))
	unblock()
	opened := time.Now()
	cleared := eventually(t, 90*time.Second, "WeftPeerHandshakeStale clears once the port passes again", func() error {
		if a := firing(t, "WeftPeerHandshakeStale"); len(a) > 0 {
			return fmt.Errorf("still firing: %v", a)
		}
		return nil
	})
	t.Logf("and cleared %v after the port opened (%v)", cleared.Round(time.Second), time.Since(opened).Round(time.Second))
}

func promGet(path string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", promPort, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// firing lists the labels of the named alert's firing instances.
func firing(t *testing.T, name string) []map[string]string {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := promGet("/api/v1/alerts", &r); err != nil {
		t.Logf("alerts: %v", err)
		return nil
	}
	var out []map[string]string
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name && a.State == "firing" {
			out = append(out, a.Labels)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
