package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// Config is the agent's configuration, from flags.
type Config struct {
	NodeName string
	PodCIDRs []netip.Prefix
	// ClusterCIDRs are the cluster's pod ranges, at most one per family:
	// every node's pod CIDRs must lie inside them. Empty: not checked.
	ClusterCIDRs []netip.Prefix
	// ExternalCIDRs are the ranges Peer objects may take (--external-cidr);
	// empty: no Peer object is accepted.
	ExternalCIDRs    []netip.Prefix
	AdvertiseAddress netip.Addr // invalid: take it from the default route
	// OtherAddresses: the node's underlay address of the other family
	// (a second --advertise-address), announced so that a direct path
	// can carry that family too.
	OtherAddresses []netip.Addr
	ListenPort     int
	GossipPort     int
	Join           []string // host:port
	GossipKeyFile  string
	InsecureGossip bool
	Interface      string
	StateDir       string
	RunDir         string
	CNIConfDir     string
	HTTPAddr       string
	PprofAddr      string // "": no profiling endpoint; else a loopback host:port
	// HandoverVersion is the handover protocol this agent asks for (0:
	// every one this build speaks, handover.Versions); another value is
	// for tests (1: the socket closed at the switch; an unknown one: the
	// fallback to a plain restart).
	HandoverVersion int
	// HandoverHold pauses a successor between the offer and take (tests of
	// an old agent that dies in the middle); at most a minute.
	HandoverHold time.Duration
	// ReadyFile, when set, exists while this process runs the data plane
	// and is ready (the DaemonSet's readiness probe: weft-agent ready).
	ReadyFile string
	MTU       int // 0: underlay MTU - mesh.Overhead
	LogLevel  string
	// Kubernetes mode: a kubeconfig, or in-cluster when KUBERNETES_SERVICE_HOST is set.
	Kubeconfig string
	KubeMode   bool
	// Egress: pod traffic to destinations outside every pod CIDR, node
	// address and NoMasquerade range is masqueraded to the node's address.
	Masquerade   bool
	NoMasquerade []netip.Prefix
	// NetworkPolicy: enforce networking.k8s.io/v1 for this node's pods
	// (Kubernetes mode only).
	NetworkPolicy bool
	// Topology: this node's location (standalone; in Kubernetes it comes
	// from the Node: TopologyLabel, overridden by weft.dev/location),
	// whether pod traffic to peers of the same location skips the tunnel
	// (IntraDirect), and whether pod traffic that cannot take the tunnel
	// (or a direct path) is dropped rather than routed in the clear.
	Location         string
	TopologyLabel    string
	IntraDirect      bool
	StrictEncryption bool
	// BehindNAT: this node's announced endpoint may not reach it; peers
	// keep the endpoint its handshakes come from.
	BehindNAT bool
	// Keys: post-quantum preshared keys per pair (PQ: off, preferred or
	// required; PQPort: the TCP port of the exchange, the same on every
	// node), how often each pair's key is replaced, and how often the
	// node's own WireGuard key is (0: only on `weftctl rotate-key`).
	PQ          string
	PQPort      int
	PSKRotation time.Duration
	KeyRotation time.Duration
	// OnDemandAfter: a peer whose traffic stood still this long (and whose
	// last handshake is over 3 min old) leaves the WireGuard device until
	// a packet or its handshake brings it back (0: every peer stays).
	// OnDemandGrace: how long after start peers keep their keepalive.
	OnDemandAfter time.Duration
	OnDemandGrace time.Duration
}

// UsageError is Parse's answer to -h and --help: the usage text. It
// unwraps to flag.ErrHelp.
type UsageError struct{ Text string }

func (e *UsageError) Error() string { return "help requested" }
func (e *UsageError) Unwrap() error { return flag.ErrHelp }

// EnforcesPolicy reports whether the agent runs the NetworkPolicy controller.
func (c Config) EnforcesPolicy() bool { return c.KubeMode && c.NetworkPolicy }

var (
	nodeNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	ifaceNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
)

// Parse parses the agent's command line. getenv supplies defaults such as
// NODE_NAME; it is os.Getenv outside tests.
func Parse(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("weft-agent", flag.ContinueOnError)
	out := new(strings.Builder)
	fs.SetOutput(out) // errors are returned, not printed twice; usage is returned with ErrHelp
	fs.Usage = func() {
		fmt.Fprint(out, "usage: weft-agent [flags]                 run the node agent\n"+
			"       weft-agent install-cni [--from DIR] [--to DIR]\n"+
			"       weft-agent ensure-gossip-key [--namespace NS] [--secret NAME] [--kubeconfig F]\n\nflags:\n")
		fs.PrintDefaults()
	}
	var podCIDRs, clusterCIDRs, externalCIDRs, join, adv listFlag
	fs.StringVar(&c.NodeName, "node-name", getenv("NODE_NAME"), "this node's name (default $NODE_NAME, then the host name)")
	fs.Var(&podCIDRs, "pod-cidr", "this node's pod CIDR; repeat or comma-separate for dual-stack")
	fs.Var(&clusterCIDRs, "cluster-cidr", "the cluster's pod range, one per family (repeat or comma-separate); peers claiming pod CIDRs outside it are refused")
	fs.Var(&externalCIDRs, "external-cidr", "ranges that Peer objects (external WireGuard peers) may take, repeat or comma-separate; a Peer whose allowed IPs leave them is refused; none: no Peer is accepted")
	fs.Var(&adv, "advertise-address", "underlay address peers reach this node on (default: source of the default route); a second one, of the other family, is announced for direct paths")
	fs.IntVar(&c.ListenPort, "listen-port", 51820, "WireGuard UDP port")
	fs.IntVar(&c.GossipPort, "gossip-port", 7946, "gossip TCP and UDP port")
	fs.Var(&join, "join", "gossip seeds, host[:port], comma-separated")
	fs.StringVar(&c.GossipKeyFile, "gossip-key-file", "", "file holding the gossip key, base64 of 32 bytes (as from `wg genkey`)")
	fs.BoolVar(&c.InsecureGossip, "insecure-gossip", false, "allow gossip without encryption (tests only)")
	fs.StringVar(&c.Interface, "interface", "weft0", "tunnel interface name")
	fs.StringVar(&c.StateDir, "state-dir", "/var/lib/weft", "directory for the private key and cached peers")
	fs.StringVar(&c.RunDir, "run-dir", "/var/run/wireguard", "directory for the UAPI socket")
	fs.StringVar(&c.CNIConfDir, "cni-conf-dir", "/etc/cni/net.d", "directory for the CNI config")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":9587", "address for health, metrics and the peer API")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve Go's /debug/pprof on this loopback address (e.g. 127.0.0.1:6060); off by default")
	fs.StringVar(&c.ReadyFile, "ready-file", "", "a file that exists while this agent runs the data plane and is ready (for a readiness probe: `weft-agent ready --file F`); the HTTP port cannot tell a handover's two agents apart")
	fs.DurationVar(&c.HandoverHold, "handover-hold", 0, "pause this long between a handover's offer and take (tests only; at most 1m)")
	fs.IntVar(&c.HandoverVersion, "handover-version", 0, "handover protocol version to ask a running agent for (default: every one this build speaks; tests only: 1 closes the port at the switch, an unknown one tests the fallback to a plain restart)")
	fs.IntVar(&c.MTU, "mtu", 0, "tunnel MTU (default: underlay MTU - 80)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	var noMasq listFlag
	fs.BoolVar(&c.Masquerade, "masquerade", true, "masquerade pod traffic that leaves the cluster")
	fs.Var(&noMasq, "no-masquerade-cidr", "extra destinations reached without masquerade (repeat or comma list)")
	fs.BoolVar(&c.NetworkPolicy, "network-policy", true, "enforce Kubernetes NetworkPolicy for this node's pods (Kubernetes mode)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig for Kubernetes mode (in a pod, the service account is used)")
	fs.StringVar(&c.Location, "location", "", "this node's location (standalone mode; in Kubernetes the Node's --topology-label or weft.dev/location annotation)")
	fs.StringVar(&c.TopologyLabel, "topology-label", api.DefaultTopologyLabel, "the Node label that names its location (Kubernetes mode)")
	intra := fs.String("intra-location", peer.IntraEncrypted, "pod traffic to nodes of the same location: encrypted (through the tunnel) or direct (over the underlay, when both ends say direct)")
	fs.BoolVar(&c.BehindNAT, "behind-nat", false, "this node's endpoint may be unreachable (NAT): peers use the address its handshakes come from (announced as weft.dev/behind-nat)")
	fs.BoolVar(&c.StrictEncryption, "strict-encryption", false, "drop pod traffic to other nodes that would leave outside the tunnel (a direct path excepted) instead of routing it in the clear")
	fs.StringVar(&c.PQ, "pq", keys.Preferred, "post-quantum preshared key per pair (ML-KEM-768): preferred (a pair that cannot agree one runs without), required (such a pair stays down) or off")
	fs.IntVar(&c.PQPort, "pq-port", 51821, "TCP port of the key exchange (the same on every node)")
	fs.DurationVar(&c.PSKRotation, "psk-rotation", 3*time.Minute, "how often each pair agrees a new preshared key")
	fs.DurationVar(&c.OnDemandAfter, "on-demand-after", 0, "take a peer off the WireGuard device after its traffic stood still this long (and its last handshake is over 3 min old); a packet to it or its handshake brings it back (0: off)")
	fs.DurationVar(&c.OnDemandGrace, "on-demand-grace", time.Minute, "with --on-demand-after: how long after start peers keep their keepalive, so sessions its peers still hold with this node's previous run are replaced at once")
	fs.DurationVar(&c.KeyRotation, "key-rotation", 0, "how often this node replaces its WireGuard key (0: only when `weftctl rotate-key` asks)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, &UsageError{Text: out.String()}
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.KubeMode = c.Kubeconfig != "" || getenv("KUBERNETES_SERVICE_HOST") != ""
	var err error
	if c.IntraDirect, err = peer.ParseIntraLocation(*intra); err != nil {
		return c, fmt.Errorf("--%v", err)
	}
	if c.Location, err = peer.ParseLocation(c.Location); err != nil {
		return c, fmt.Errorf("--%v", err)
	}
	if c.Location != "" && c.KubeMode {
		return c, fmt.Errorf("--location is for standalone mode: in Kubernetes a node's location comes from its Node (label %s or annotation %s), which every peer reads alike", c.TopologyLabel, api.AnnotationLocation)
	}
	if len(c.TopologyLabel) > 317 || c.TopologyLabel == "" {
		return c, fmt.Errorf("--topology-label %.40q: want a label key", c.TopologyLabel)
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("--node-name not given and no host name: %w", err)
		}
		c.NodeName = strings.ToLower(h)
	}
	if c.PodCIDRs, err = peer.ParsePodCIDRs(podCIDRs); err != nil {
		return c, fmt.Errorf("--pod-cidr %v", err)
	}
	if c.ClusterCIDRs, err = parseClusterCIDRs(clusterCIDRs); err != nil {
		return c, err
	}
	if c.ExternalCIDRs, err = parseExternalCIDRs(externalCIDRs, c.ClusterCIDRs); err != nil {
		return c, err
	}
	if reason, err := (peer.Bounds{ClusterCIDRs: c.ClusterCIDRs}).CheckPodCIDRs(c.PodCIDRs); err != nil && reason != "" {
		return c, fmt.Errorf("--pod-cidr: %v", err)
	}
	if len(adv) > 2 {
		return c, errors.New("--advertise-address: give one address, or one per family")
	}
	for i, s := range adv {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.IsGlobalUnicast() && !a.IsPrivate() || a.Zone() != "" {
			return c, fmt.Errorf("--advertise-address %q: not a unicast IP address", s)
		}
		a = a.Unmap()
		if i == 0 {
			c.AdvertiseAddress = a
			continue
		}
		if a.Is4() == c.AdvertiseAddress.Is4() {
			return c, fmt.Errorf("--advertise-address %q: a second address must be of the other family", s)
		}
		c.OtherAddresses = append(c.OtherAddresses, a)
	}
	for _, s := range noMasq {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return c, fmt.Errorf("--no-masquerade-cidr %q: not a CIDR", s)
		}
		c.NoMasquerade = append(c.NoMasquerade, p.Masked())
	}
	for _, s := range join {
		hp, err := normalizeSeed(s, c.GossipPort)
		if err != nil {
			return c, err
		}
		c.Join = append(c.Join, hp)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if len(c.NodeName) > 253 || !nodeNameRE.MatchString(c.NodeName) {
		return fmt.Errorf("--node-name %q: want a DNS subdomain (lower-case letters, digits, '-' and '.')", c.NodeName)
	}
	if len(c.PodCIDRs) == 0 && !c.KubeMode {
		return errors.New("--pod-cidr is required (or run in Kubernetes mode, which reads the Node's spec.podCIDRs)")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--listen-port", c.ListenPort}, {"--gossip-port", c.GossipPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s %d: want 1-65535", p.name, p.v)
		}
	}
	if c.PQPort < 1 || c.PQPort > 65535 || c.PQPort == c.GossipPort {
		return fmt.Errorf("--pq-port %d: want 1-65535, not the gossip port (both TCP)", c.PQPort)
	}
	switch c.PQ {
	case keys.Off, keys.Preferred, keys.Required:
	default:
		return fmt.Errorf("--pq %q: want preferred, required or off", c.PQ)
	}
	if c.PSKRotation < time.Second || c.PSKRotation > 24*time.Hour {
		return fmt.Errorf("--psk-rotation %v: want 1s-24h", c.PSKRotation)
	}
	if c.OnDemandAfter != 0 && (c.OnDemandAfter < time.Second || c.OnDemandAfter > 24*time.Hour) {
		return fmt.Errorf("--on-demand-after %v: want 0 (off) or 1s-24h", c.OnDemandAfter)
	}
	if c.OnDemandGrace < 0 || c.OnDemandGrace > time.Hour {
		return fmt.Errorf("--on-demand-grace %v: want 0-1h", c.OnDemandGrace)
	}
	if c.KeyRotation != 0 && (c.KeyRotation < 10*time.Second || c.KeyRotation > 365*24*time.Hour) {
		return fmt.Errorf("--key-rotation %v: want 0 (off) or 10s-8760h", c.KeyRotation)
	}
	if c.ListenPort == c.GossipPort {
		return fmt.Errorf("--listen-port and --gossip-port are both %d: WireGuard and gossip need separate UDP ports", c.ListenPort)
	}
	if !ifaceNameRE.MatchString(c.Interface) {
		return fmt.Errorf("--interface %q: want 1-15 letters, digits, '_', '.' or '-'", c.Interface)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 65535) {
		return fmt.Errorf("--mtu %d: want 1280-65535 (or 0 for underlay MTU - 80)", c.MTU)
	}
	if c.GossipKeyFile == "" && !c.InsecureGossip {
		return errors.New("--gossip-key-file is required (or --insecure-gossip to run gossip unencrypted)")
	}
	if c.GossipKeyFile != "" && c.InsecureGossip {
		return errors.New("--gossip-key-file and --insecure-gossip contradict each other")
	}
	for _, d := range []struct{ name, v string }{{"--state-dir", c.StateDir}, {"--run-dir", c.RunDir}, {"--cni-conf-dir", c.CNIConfDir}} {
		if d.v == "" || !strings.HasPrefix(d.v, "/") {
			return fmt.Errorf("%s %q: want an absolute path", d.name, d.v)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("--http-addr %q: want host:port", c.HTTPAddr)
	}
	if c.HandoverHold < 0 || c.HandoverHold > time.Minute {
		return fmt.Errorf("--handover-hold %v: want 0 to 1m", c.HandoverHold)
	}
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if a, perr := netip.ParseAddr(host); err != nil || perr != nil || !a.IsLoopback() {
			return fmt.Errorf("--pprof-addr %q: want a loopback ip:port such as 127.0.0.1:6060", c.PprofAddr)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// maxExternalCIDRs bounds --external-cidr.
const maxExternalCIDRs = 32

// parseExternalCIDRs parses --external-cidr: network addresses of unicast
// ranges no wider than a Peer object may claim, none overlapping the
// cluster's pod ranges.
func parseExternalCIDRs(ss []string, cluster []netip.Prefix) ([]netip.Prefix, error) {
	if len(ss) > maxExternalCIDRs {
		return nil, fmt.Errorf("--external-cidr: at most %d ranges, got %d", maxExternalCIDRs, len(ss))
	}
	var out []netip.Prefix
	for _, s := range ss {
		p, err := peer.ParseNetwork(s)
		if err != nil {
			return nil, fmt.Errorf("--external-cidr %v", err)
		}
		if err := peer.CheckExternalRange(p); err != nil {
			return nil, fmt.Errorf("--external-cidr %q: %v", s, err)
		}
		for _, c := range cluster {
			if c.Overlaps(p) {
				return nil, fmt.Errorf("--external-cidr %q overlaps the cluster's pod range %s", s, c)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// parseClusterCIDRs parses --cluster-cidr: network addresses, one per
// family, each large enough to hold at least one node's range.
func parseClusterCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := peer.ParseNetwork(s)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr %v", err)
		}
		if p.Bits() > p.Addr().BitLen()-2 || p.Addr().IsLoopback() || p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() || p.Addr().Is4In6() {
			return nil, fmt.Errorf("--cluster-cidr %q: not a unicast range that can hold pods", s)
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("--cluster-cidr %q: only one range per address family", s)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func normalizeSeed(s string, defPort int) (string, error) {
	host, port := s, strconv.Itoa(defPort)
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.Count(s, ":") > 1 { // bare IPv6
		host = strings.Trim(s, "[]")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("--join %q: bad port", s)
	}
	if host == "" || len(host) > 253 {
		return "", fmt.Errorf("--join %q: want host[:port]", s)
	}
	return net.JoinHostPort(host, port), nil
}

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// ConfInput is what plan.ConfList needs from the configuration: weft-cni
// asks the agent's /readyz on loopback when the HTTP server listens on all
// addresses, and reports attachments on the socket when policy is enforced.
func (c Config) ConfInput(mtu int) plan.ConfInput {
	in := plan.ConfInput{PodCIDRs: c.PodCIDRs, MTU: mtu, DataDir: filepath.Join(c.StateDir, "ipam")}
	host, port, _ := net.SplitHostPort(c.HTTPAddr) // validated by Parse
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	in.ReadyURL = "http://" + net.JoinHostPort(host, port) + "/readyz"
	if c.EnforcesPolicy() {
		in.AgentSocket = filepath.Join(c.StateDir, api.AgentSocket)
	}
	return in
}
