package cni

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/api"
)

// Type is the plugin's CNI type.
const Type = api.PluginType

// HostVethPrefix starts the name of every host-side veth weft-cni creates.
const HostVethPrefix = api.HostVethPrefix

// Gateways the pod routes through: link-local addresses answered by a static
// neighbour entry for the host veth's MAC (Calico's pattern), so the host
// side needs no address of its own and no proxy ARP.
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// NetConf is weft-cni's configuration, as the agent writes it in the conflist.
type NetConf struct {
	types.PluginConf
	api.WeftConf // weft's own keys: the schema the agent writes

	// Set by runtimes; accepted and ignored.
	RuntimeConfig json.RawMessage `json:"runtimeConfig,omitempty"`
	Args          json.RawMessage `json:"args,omitempty"`

	pools []netip.Prefix
}

var containerIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ParseConf decodes and validates stdin. Malformed JSON is a decode failure
// (code 6); unknown fields and bad values are invalid config (code 7).
func ParseConf(b []byte) (*NetConf, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "weft-cni: config is not valid JSON", err.Error())
	}
	// Keys under cni.dev/ belong to the runtime and the spec (libcni adds
	// cni.dev/attachments to GC, for one); they are not weft's to refuse.
	for k := range probe {
		if strings.HasPrefix(k, "cni.dev/") && k != "cni.dev/valid-attachments" {
			delete(probe, k)
			b, _ = json.Marshal(probe)
		}
	}
	c := &NetConf{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "weft-cni: "+err.Error(), "")
	}
	bad := func(format string, args ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, "weft-cni: "+fmt.Sprintf(format, args...), "")
	}
	if len(c.PodCIDRs) == 0 || len(c.PodCIDRs) > 2 {
		return nil, bad("podCIDRs: want one or two (one per family), got %d", len(c.PodCIDRs))
	}
	var v4, v6 bool
	for _, s := range c.PodCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() || p.Addr().Zone() != "" {
			return nil, bad("podCIDRs: %q is not a network CIDR", s)
		}
		if p.Bits() > p.Addr().BitLen()-2 {
			return nil, bad("podCIDRs: %s is too small for pods", s)
		}
		if p.Addr().Is4() && v4 || p.Addr().Is6() && v6 {
			return nil, bad("podCIDRs: only one CIDR per address family")
		}
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
		c.pools = append(c.pools, p)
	}
	minMTU := 576
	if v6 {
		minMTU = 1280
	}
	if c.MTU < minMTU || c.MTU > 65535 {
		return nil, bad("mtu %d: want %d-65535", c.MTU, minMTU)
	}
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		return nil, bad("dataDir %q: want an absolute path", c.DataDir)
	}
	if c.Name == "" || len(c.Name) > 128 || !containerIDRE.MatchString(c.Name) {
		return nil, bad("name %q: want letters, digits, '_', '.' or '-'", c.Name)
	}
	if c.AgentSocket != "" && (!filepath.IsAbs(c.AgentSocket) || len(c.AgentSocket) > 107) {
		return nil, bad("agentSocket %q: want an absolute path of at most 107 bytes", c.AgentSocket)
	}
	if c.ReadyURL != "" {
		u, err := url.Parse(c.ReadyURL)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, bad("readyURL %q: want http://host:port/path", c.ReadyURL)
		}
	}
	return c, nil
}

// Pools are the parsed pod CIDRs.
func (c *NetConf) Pools() []netip.Prefix { return c.pools }

// storeDir is where this network's reservations live.
func (c *NetConf) storeDir() string { return filepath.Join(c.DataDir, c.Name) }

// HostVethName derives the host-side veth name from the attachment: at most
// 15 bytes, stable across retries of the same ADD, distinct per attachment.
func HostVethName(containerID, ifname string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifname))
	return HostVethPrefix + hex.EncodeToString(h[:])[:13]
}

var supportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")
