//go:build kind

// Package kind is weft's end-to-end suite on a real Kubernetes: the kind
// cluster `make kind-up` builds here from local images (real kubelet,
// containerd, kubeadm, kube-proxy, CoreDNS), with weft installed from
// deploy/weft.yaml as shipped. `make e2e-kind` brings the cluster up, runs
// this and takes it down; `make test` does that whenever a Docker engine
// answers. Every check is an outcome a user sees: a reply arrived from the
// right address, a capture holds only ciphertext, a stream survived.
package kind

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	context_ = "kind-weft"
	ns       = "weft-e2e"
	bridge   = "weft-kind0" // the Docker network's bridge (tools/kind/cluster.sh)
	agnhost  = "registry.k8s.io/e2e-test-images/agnhost:2.56"
	cp       = "weft-control-plane"
	w1       = "weft-worker"
	w2       = "weft-worker2"
)

var (
	podV4 = netip.MustParsePrefix("10.244.0.0/16")
	podV6 = netip.MustParsePrefix("fd00:10:244::/56")
	// The cluster's families (KIND_IP_FAMILY, as make kind-up built it:
	// dual, ipv4 or ipv6).
	hasV4 = os.Getenv("KIND_IP_FAMILY") != "ipv6"
	hasV6 = os.Getenv("KIND_IP_FAMILY") != "ipv4"
)

func root() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

func kubectlBin() string {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	return "kubectl"
}

// sh runs a command and returns its combined output and error.
func sh(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func must(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := sh(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func kc(args ...string) (string, error) {
	return sh(kubectlBin(), append([]string{"--context", context_}, args...)...)
}

func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	return must(t, kubectlBin(), append([]string{"--context", context_}, args...)...)
}

func apply(t testing.TB, manifest string) {
	t.Helper()
	cmd := exec.Command(kubectlBin(), "--context", context_, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, manifest)
	}
}

// eventually polls f every 250 ms until it returns nil or the time is up,
// and returns when, after the start, the attempt that succeeded began (so a
// probe's own timeout does not count).
func eventually(t testing.TB, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		attempt := time.Since(start)
		if err = f(); err == nil {
			return attempt
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, within, err)
	return 0
}

// pod is one agnhost netexec pod pinned to a node.
type pod struct {
	name, node string
	v4, v6     netip.Addr
}

func (p pod) String() string { return p.name + "@" + p.node }

// curlFamilies are curl's flags for the cluster's families (-4, -6).
func curlFamilies() []string {
	var out []string
	if hasV4 {
		out = append(out, "-4")
	}
	if hasV6 {
		out = append(out, "-6")
	}
	return out
}

// addrs are the pod's addresses, one per family of the cluster.
func (p pod) addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{p.v4, p.v6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// addr is the pod's IPv4 address, or on an IPv6 cluster its IPv6 one.
func (p pod) addr() netip.Addr {
	if p.v4.IsValid() {
		return p.v4
	}
	return p.v6
}

// familiesOK reports whether v4 and v6 are exactly the cluster's families
// and in its pod ranges.
func familiesOK(v4, v6 netip.Addr) bool {
	return hasV4 == v4.IsValid() && hasV6 == v6.IsValid() &&
		(!hasV4 || podV4.Contains(v4)) && (!hasV6 || podV6.Contains(v6))
}

func webPod(name, node string, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: web, name: %s}
spec:
  nodeName: %s
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: %s
    imagePullPolicy: IfNotPresent
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    ports:
    - name: http
      containerPort: 8080
%s`, name, ns, name, node, agnhost, extra)
}

// addrs reads a pod's IPv4 and IPv6 address from its status.
func addrs(t testing.TB, name string) (v4, v6 netip.Addr) {
	t.Helper()
	out := kubectl(t, "-n", ns, "get", "pod", name, "-o", "jsonpath={.status.podIPs[*].ip}")
	for _, f := range strings.Fields(out) {
		a, err := netip.ParseAddr(f)
		if err != nil {
			t.Fatalf("pod %s: address %q: %v", name, f, err)
		}
		if a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	if !familiesOK(v4, v6) {
		t.Fatalf("pod %s has addresses %q: want one in each of the cluster's families (IPv4 %v in %s, IPv6 %v in %s)", name, out, hasV4, podV4, hasV6, podV6)
	}
	return v4, v6
}

func url(a netip.Addr, port int, path string) string {
	return "http://" + netip.AddrPortFrom(a, uint16(port)).String() + path
}

// fetch runs curl in a pod (or, with node set, in a kind node) and returns the body.
func fetch(from pod, target string) (string, error) {
	return kc("-n", ns, "exec", from.name, "--", "curl", "-sS", "--max-time", "3", target)
}

func nodeFetch(node, target string) (string, error) {
	return sh("docker", "exec", node, "curl", "-sS", "--max-time", "3", target)
}

// seen parses netexec's /clientip answer ("ip:port" or "[ip]:port"): the
// address the server saw the request come from.
func seen(body string, err error) (netip.Addr, error) {
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%v %s", err, body)
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(body))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("clientip answer %q: %v", body, err)
	}
	return ap.Addr().Unmap(), nil
}

func nodeIP(t testing.TB, node string) netip.Addr {
	t.Helper()
	field := "IPAddress" // the Docker network is dual-stack; the cluster uses its family's address
	if !hasV4 {
		field = "GlobalIPv6Address"
	}
	out := must(t, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{."+field+"}}{{end}}", node)
	return netip.MustParseAddr(out)
}

// podCIDRs reads a node's pod ranges from the API.
func podCIDRs(t testing.TB, node string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, f := range strings.Fields(kubectl(t, "get", "node", node, "-o", "jsonpath={.spec.podCIDRs[*]}")) {
		ps = append(ps, netip.MustParsePrefix(f))
	}
	return ps
}

func TestKind(t *testing.T) {
	if _, err := kc("get", "nodes"); err != nil {
		t.Fatalf("no cluster behind context %s (make kind-up brings it up): %v", context_, err)
	}
	kc("delete", "namespace", ns, "--wait=true", "--timeout=120s")
	kubectl(t, "create", "namespace", ns)
	if os.Getenv("WEFT_KIND_KEEP") == "" {
		t.Cleanup(func() { kc("delete", "namespace", ns, "--wait=false") })
	}

	pods := []pod{{name: "web-cp", node: cp}, {name: "web-w1", node: w1}, {name: "web-w2", node: w2}}
	for _, p := range pods {
		apply(t, webPod(p.name, p.node, ""))
	}
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=180s")
	for i := range pods {
		pods[i].v4, pods[i].v6 = addrs(t, pods[i].name)
		t.Logf("%s: %v", pods[i], pods[i].addrs())
	}

	t.Run("pod to pod across nodes, IPv4 and IPv6, without NAT", func(t *testing.T) {
		for _, from := range pods {
			for _, to := range pods {
				if from == to {
					continue
				}
				for _, dst := range to.addrs() {
					want := from.v4
					if dst.Is6() {
						want = from.v6
					}
					if src, err := seen(fetch(from, url(dst, 8080, "/clientip"))); err != nil || src != want {
						t.Errorf("%s -> %s (%s): the server saw %v (%v), want the client pod's own %s", from, to, dst, src, err, want)
					}
				}
			}
		}
	})

	t.Run("node to remote pod", func(t *testing.T) {
		// Each node reaches the other nodes' pods, from the first address of
		// its own pod range (weft's contract), over both families.
		for _, node := range []string{cp, w1, w2} {
			ranges := podCIDRs(t, node)
			for _, to := range pods {
				if to.node == node {
					continue
				}
				for _, dst := range to.addrs() {
					src, err := seen(nodeFetch(node, url(dst, 8080, "/clientip")))
					ok := false
					for _, r := range ranges {
						ok = ok || (r.Contains(src) && src == r.Addr().Next())
					}
					if err != nil || !ok {
						t.Errorf("node %s -> %s: the server saw %v (%v), want the first address of one of %v", node, dst, src, err, ranges)
					}
				}
			}
		}
	})

	t.Run("pods reach every node's host-network endpoints", func(t *testing.T) {
		// The agent's HTTP port on every node, and the API server on the
		// control plane by its node address and through the kubernetes
		// Service: a pod's packet crosses the underlay, the reply comes back
		// through the tunnel (strict rp_filter on the node would drop it).
		for _, from := range pods {
			for _, node := range []string{cp, w1, w2} {
				target := url(nodeIP(t, node), 9587, "/healthz")
				if body, err := fetch(from, target); err != nil {
					t.Errorf("%s -> node %s (%s): %v %s", from, node, target, err, body)
				}
			}
			for _, target := range []string{"https://" + netip.AddrPortFrom(nodeIP(t, cp), 6443).String() + "/healthz", "https://kubernetes.default.svc.cluster.local/healthz"} {
				if body, err := kc("-n", ns, "exec", from.name, "--", "curl", "-sSk", "--max-time", "3", target); err != nil || body != "ok" {
					t.Errorf("%s -> API server %s: %v %q", from, target, err, body)
				}
			}
		}
	})

	t.Run("capture on the Docker bridge holds only ciphertext", func(t *testing.T) {
		capture(t, pods[1], pods[2])
	})

	t.Run("ClusterIP by DNS name and over both families (A and AAAA), NodePort from the Docker host, hostPort", func(t *testing.T) {
		services(t, pods)
	})

	t.Run("NetworkPolicy default deny, then allow", func(t *testing.T) {
		netpol(t, pods)
	})

	t.Run("kubectl weft status and --matrix through the API server", func(t *testing.T) {
		kubectlWeftStatus(t, pods)
	})

	t.Run("kubectl weft graph, showconf and rotate-key through the API server", func(t *testing.T) {
		kubectlWeftGraphAndRotate(t)
	})

	t.Run("kubectl weft sysdump holds every node's files and no secret", func(t *testing.T) {
		kubectlWeftSysdump(t)
	})

	t.Run("Prometheus: the stale-handshake alert fires and clears", func(t *testing.T) {
		staleHandshakeAlert(t)
	})

	t.Run("agent upgrade, rollout restart, downgrade and kill -9 under traffic", func(t *testing.T) {
		upgradeUnderTraffic(t)
	})

	t.Run("docker restart of a worker", func(t *testing.T) {
		restartWorker(t, pods)
	})

	t.Run("iperf3 pod to pod across workers", func(t *testing.T) {
		iperf(t)
	})
}

// capture records the kind bridge while two pods on two workers exchange a
// recognisable plaintext over IPv4 and IPv6, then reads the capture: the
// plaintext must not appear, no packet on the wire may carry either pod's
// address, and between the two workers there is only WireGuard (UDP 51820)
// and the agents' own gossip (7946, encrypted with the gossip key).
func capture(t *testing.T, from, to pod) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bridge.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dump := exec.CommandContext(ctx, "tcpdump", "-i", bridge, "-U", "-n", "-s", "0", "-w", file)
	var dumpErr bytes.Buffer
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	time.Sleep(time.Second)
	marker := "WEFT-PLAINTEXT-MARKER-" + strings.Repeat("x", 40)
	for i := 0; i < 20; i++ {
		for _, dst := range to.addrs() {
			body, err := fetch(from, url(dst, 8080, "/echo?msg="+marker))
			if err != nil || !strings.Contains(body, marker) {
				t.Fatalf("%s -> %s /echo: %v %q", from, dst, err, body)
			}
		}
	}
	time.Sleep(time.Second)
	dump.Process.Signal(os.Interrupt)
	dump.Wait()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("capture: %v (%s)", err, dumpErr.String())
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Errorf("the plaintext %q crossed the Docker bridge unencrypted", marker)
	}
	talkers := map[netip.Addr]bool{from.v4: true, from.v6: true, to.v4: true, to.v6: true}
	n1, n2 := nodeIP(t, from.node), nodeIP(t, to.node)
	out := must(t, "tcpdump", "-r", file, "-n", "-q", "-t")
	var wg, gossip, other, leaked, podHost int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != "IP" && f[0] != "IP6") {
			continue
		}
		srcPort, dstPort := f[1], strings.TrimSuffix(f[3], ":")
		src, dst := hostOf(srcPort), hostOf(dstPort)
		switch {
		case talkers[src] || talkers[dst]:
			leaked++
			if leaked <= 5 {
				t.Errorf("a packet of the talking pods crossed the Docker bridge in the clear: %s", line)
			}
		case podV4.Contains(src) || podV6.Contains(src) || podV4.Contains(dst) || podV6.Contains(dst):
			podHost++ // other pods to host-network endpoints (see README)
		case (src == n1 && dst == n2) || (src == n2 && dst == n1):
			switch {
			case strings.HasSuffix(srcPort, ".51820") && strings.HasSuffix(dstPort, ".51820") && strings.Contains(line, "UDP"):
				wg++
			case strings.HasSuffix(srcPort, ".7946") || strings.HasSuffix(dstPort, ".7946"):
				gossip++
			default:
				other++
				if other <= 5 {
					t.Errorf("between the workers, neither WireGuard nor gossip: %s", line)
				}
			}
		}
	}
	t.Logf("capture on %s while the pods talked: between %s and %s %d WireGuard UDP packets, %d gossip, %d other; %d packets of the talking pods in the clear; %d of other pods to host-network endpoints",
		bridge, from.node, to.node, wg, gossip, other, leaked, podHost)
	if wg < 80 {
		t.Errorf("only %d WireGuard packets between the workers for 40 HTTP exchanges", wg)
	}
}

// hostOf parses tcpdump's "addr.port" (or "addr") into an address.
func hostOf(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a
	}
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		if a, err := netip.ParseAddr(s[:i]); err == nil {
			return a
		}
	}
	return netip.Addr{}
}

func services(t *testing.T, pods []pod) {
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: %s}
spec:
  type: NodePort
  ipFamilyPolicy: PreferDualStack
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns))
	names := map[string]bool{}
	for _, p := range pods {
		names[p.name] = true
	}
	// ClusterIP by DNS name from a pod on every node, until every backend answered.
	for _, from := range pods {
		seen := map[string]bool{}
		eventually(t, 60*time.Second, "Service web by DNS name from "+from.String(), func() error {
			body, err := fetch(from, "http://web."+ns+".svc.cluster.local/hostname")
			if err != nil {
				return fmt.Errorf("%v %s", err, body)
			}
			if !names[body] {
				return fmt.Errorf("answer %q is not a backend", body)
			}
			seen[body] = true
			if len(seen) < len(pods) {
				return fmt.Errorf("backends seen so far: %v", seen)
			}
			return nil
		})
	}
	// Both families: the Service's two ClusterIPs, and its name resolved
	// for one family at a time (curl -4: an A record, -6: AAAA), from a pod
	// on every node.
	ips := strings.Fields(kubectl(t, "-n", ns, "get", "service", "web", "-o", `jsonpath={.spec.clusterIPs[*]}`))
	var families []string
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			families = append(families, "v4")
		} else if err == nil {
			families = append(families, "v6")
		}
	}
	if want := len(curlFamilies()); len(ips) != want || (want == 2 && families[0] == families[1]) {
		t.Fatalf("Service web has ClusterIPs %v: want one per family of the cluster (IPv4 %v, IPv6 %v)", ips, hasV4, hasV6)
	}
	for _, from := range pods {
		for _, ip := range ips {
			a := netip.MustParseAddr(ip)
			eventually(t, 30*time.Second, fmt.Sprintf("ClusterIP %s from %s", ip, from), func() error {
				body, err := fetch(from, url(a, 80, "/hostname"))
				if err != nil || !names[body] {
					return fmt.Errorf("%v %q", err, body)
				}
				return nil
			})
		}
		for _, family := range curlFamilies() {
			eventually(t, 30*time.Second, fmt.Sprintf("Service web by name with curl %s from %s", family, from), func() error {
				body, err := kc("-n", ns, "exec", from.name, "--", "curl", family, "-sS", "--max-time", "3", "http://web."+ns+".svc.cluster.local/hostname")
				if err != nil || !names[body] {
					return fmt.Errorf("%v %q", err, body)
				}
				return nil
			})
		}
	}
	port := kubectl(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
	for _, node := range []string{cp, w1, w2} {
		target := "http://" + net.JoinHostPort(nodeIP(t, node).String(), port) + "/hostname"
		eventually(t, 30*time.Second, "NodePort "+target+" from the Docker host", func() error {
			body, err := sh("curl", "-sS", "--max-time", "3", target)
			if err != nil || !names[body] {
				return fmt.Errorf("%v %q", err, body)
			}
			return nil
		})
	}
	// hostPort: the portmap plugin weft's conflist chains.
	apply(t, webPod("hostport", w2, "      hostPort: 18080\n"))
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/hostport", "--timeout=120s")
	target := url(nodeIP(t, w2), 18080, "/hostname")
	eventually(t, 30*time.Second, "hostPort "+target+" from the Docker host", func() error {
		body, err := sh("curl", "-sS", "--max-time", "3", target)
		if err != nil || body != "hostport" {
			return fmt.Errorf("%v %q", err, body)
		}
		return nil
	})
	kubectl(t, "-n", ns, "delete", "pod", "hostport", "--wait=false")
}

func netpol(t *testing.T, pods []pod) {
	client, server := pods[1], pods[2]
	probe := func() error {
		_, err := kc("-n", ns, "exec", client.name, "--", "curl", "-sS", "--max-time", "1", url(server.addr(), 8080, "/hostname"))
		return err
	}
	if err := probe(); err != nil {
		t.Fatalf("before any policy: %v", err)
	}
	apply(t, fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: %s}
spec:
  podSelector: {matchLabels: {name: %s}}
  policyTypes: [Ingress]
`, ns, server.name))
	d := eventually(t, 10*time.Second, "default deny takes effect", func() error {
		if probe() == nil {
			return fmt.Errorf("%s still reaches %s", client, server)
		}
		return nil
	})
	t.Logf("default deny observed by a probe begun %.1f s after kubectl apply returned (each probe is a kubectl exec)", d.Seconds())
	// Every other pod is cut off too, over each family.
	for _, a := range server.addrs() {
		if _, err := fetch(pods[0], url(a, 8080, "/hostname")); err == nil {
			t.Errorf("%s reached %s at %s through a default deny", pods[0], server, a)
		}
	}
	apply(t, fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-w1, namespace: %s}
spec:
  podSelector: {matchLabels: {name: %s}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {name: %s}}}], ports: [{port: 8080}]}]
`, ns, server.name, client.name))
	d = eventually(t, 10*time.Second, "allow takes effect", probe)
	t.Logf("allow observed by a probe begun %.1f s after kubectl apply returned", d.Seconds())
	if _, err := fetch(pods[0], url(server.addr(), 8080, "/hostname")); err == nil {
		t.Errorf("%s, not selected by the allow, reached %s", pods[0], server)
	}
	kubectl(t, "-n", ns, "delete", "networkpolicy", "deny", "allow-w1")
	eventually(t, 10*time.Second, "policies removed", func() error {
		_, err := fetch(pods[0], url(server.addr(), 8080, "/hostname"))
		return err
	})
}

func iperfImage(t *testing.T) string {
	img := os.Getenv("IPERF3_IMAGE")
	if img == "" {
		t.Fatal("IPERF3_IMAGE is not set (make e2e-kind sets it to the image make kind-images built)")
	}
	return img
}

// restartWorker restarts a worker's container and measures how long until
// its pod has addresses again and reaches every other node's pod.
func restartWorker(t *testing.T, pods []pod) {
	t0 := time.Now()
	must(t, "docker", "restart", w1)
	eventually(t, 180*time.Second, "node "+w1+" Ready again", func() error {
		out, err := kc("get", "node", w1, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("Ready=%q %v", out, err)
		}
		return nil
	})
	ready := time.Since(t0)
	var back pod
	eventually(t, 180*time.Second, "web-w1 reaches every other node's pod", func() error {
		back = pod{name: "web-w1", node: w1}
		out, err := kc("-n", ns, "get", "pod", back.name, "-o", "jsonpath={.status.podIPs[*].ip}")
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(out) {
			if a, err := netip.ParseAddr(f); err == nil && podV4.Contains(a) {
				back.v4 = a
			} else if err == nil && podV6.Contains(a) {
				back.v6 = a
			}
		}
		if !familiesOK(back.v4, back.v6) {
			return fmt.Errorf("addresses %q", out)
		}
		for _, to := range pods {
			if to.node == w1 {
				continue
			}
			for _, dst := range to.addrs() {
				if _, err := fetch(back, url(dst, 8080, "/hostname")); err != nil {
					return fmt.Errorf("%s -> %s: %v", back, dst, err)
				}
				if _, err := fetch(to, url(back.addr(), 8080, "/hostname")); err != nil {
					return fmt.Errorf("%s -> %s: %v", to, back, err)
				}
			}
		}
		return nil
	})
	t.Logf("docker restart %s: node Ready after %.0f s, its pod (%s, %s) reaches every node's pods both ways after %.0f s (bound: 180 s)",
		w1, ready.Seconds(), back.v4, back.v6, time.Since(t0).Seconds())
}

// iperf runs bench/k8s/run.sh across the workers and prints its table beside
// the lab's latest pod-to-pod figure.
func iperf(t *testing.T) {
	bin := os.Getenv("WEFT_BIN_DIR")
	out := must(t, "sh", "-c", fmt.Sprintf("PATH=%s:$PATH IPERF3_IMAGE=%s WEFT_BENCH=%s/weft-bench KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config} sh bench/k8s/run.sh %s %s",
		filepath.Dir(kubectlBin()), iperfImage(t), bin, w2, w1))
	t.Logf("kind, weft pod %s -> pod %s (iperf3, Gbit/s):\n%s", w1, w2, out)
	if lab, err := os.ReadFile(filepath.Join(root(), "bench", "results", "latest.md")); err == nil {
		for _, line := range strings.Split(string(lab), "\n") {
			if strings.Contains(line, "pod to pod across nodes") {
				t.Logf("the lab's latest (bench/results/latest.md):\n%s", line)
			}
		}
	}
}
