package peer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// External is a Peer object (weft.dev/v1alpha1): a WireGuard peer that is
// not a node, such as a laptop or a VM, reached with exactly its allowed IPs.
type External struct {
	Name       string
	PublicKey  wgtypes.Key
	AllowedIPs []netip.Prefix
	Endpoint   netip.AddrPort // invalid: the peer initiates
	Keepalive  time.Duration
}

// Bounds of a Peer object's spec.
const (
	MaxExternalAllowedIPs = 16
	MaxExternalKeepalive  = 3600
)

// ExternalSpec is a Peer object's spec as it arrives (untrusted).
type ExternalSpec struct {
	PublicKey           string
	AllowedIPs          []string
	Endpoint            string
	PersistentKeepalive int64
}

// ParseExternal validates a Peer object's spec by itself: the key, at most
// MaxExternalAllowedIPs network addresses (none a default route or wider
// than /8 for IPv4 and /16 for IPv6, nothing loopback, link-local or
// multicast), an optional ip:port endpoint and a keepalive in seconds.
// AcceptExternals checks it against the cluster.
func ParseExternal(name string, s ExternalSpec) (External, error) {
	e := External{Name: name}
	var err error
	if len(name) == 0 || len(name) > 253 {
		return External{}, errors.New("name: want 1-253 characters")
	}
	if e.PublicKey, err = ParsePublicKey(s.PublicKey); err != nil {
		return External{}, fmt.Errorf("spec.publicKey: %v", err)
	}
	if len(s.AllowedIPs) == 0 || len(s.AllowedIPs) > MaxExternalAllowedIPs {
		return External{}, fmt.Errorf("spec.allowedIPs: want 1-%d, got %d", MaxExternalAllowedIPs, len(s.AllowedIPs))
	}
	for _, a := range s.AllowedIPs {
		p, err := netip.ParsePrefix(a)
		if err != nil || len(a) > 64 {
			return External{}, fmt.Errorf("spec.allowedIPs: %.64q is not a CIDR", a)
		}
		if p != p.Masked() {
			return External{}, fmt.Errorf("spec.allowedIPs: %q has host bits set; did you mean %s?", a, p.Masked())
		}
		ad := p.Addr()
		if p.Bits() < ad.BitLen()/4 || ad.IsLoopback() || ad.IsMulticast() || ad.IsLinkLocalUnicast() || ad.IsUnspecified() || ad.Is4In6() || ad.Zone() != "" {
			return External{}, fmt.Errorf("spec.allowedIPs: %s is not a unicast range a peer may own", p)
		}
		e.AllowedIPs = append(e.AllowedIPs, p)
	}
	if s.Endpoint != "" {
		if e.Endpoint, err = ParseEndpoint(s.Endpoint); err != nil {
			return External{}, fmt.Errorf("spec.endpoint: %v", err)
		}
	}
	if s.PersistentKeepalive < 0 || s.PersistentKeepalive > MaxExternalKeepalive {
		return External{}, fmt.Errorf("spec.persistentKeepalive: want 0-%d seconds", MaxExternalKeepalive)
	}
	e.Keepalive = time.Duration(s.PersistentKeepalive) * time.Second
	return e, nil
}

// ReasonExternalOverlap: a Peer object's allowed IPs overlap a pod range, a
// node's address or network, or another Peer object's.
const ReasonExternalOverlap Reason = "external-overlap"

// AcceptExternals decides which Peer objects join the mesh, by name: one
// whose key belongs to this node, a node or an earlier Peer object, or
// whose allowed IPs overlap the cluster's pod ranges, any node's pod CIDRs,
// the underlay, any node's address, or an earlier Peer object's allowed
// IPs, is refused: a Peer object may never take traffic meant for a pod or
// a node.
func AcceptExternals(self NodeInfo, bounds Bounds, nodes []NodeInfo, ext []External) ([]External, []Rejection) {
	slices.SortFunc(ext, func(a, b External) int { return strings.Compare(a.Name, b.Name) })
	keys := map[wgtypes.Key]string{self.PublicKey: self.Name}
	taken := append(slices.Clone(bounds.ClusterCIDRs), bounds.Underlay...)
	var addrs []netip.Addr
	for _, n := range append([]NodeInfo{self}, nodes...) {
		keys[n.PublicKey] = n.Name
		taken = append(taken, n.PodCIDRs...)
		addrs = append(addrs, addresses(n)...)
	}
	var ok []External
	var rej []Rejection
	for _, e := range ext {
		if owner, dup := keys[e.PublicKey]; dup {
			rej = append(rej, Rejection{e.Name, ReasonDuplicateKey, "public key already belongs to " + owner})
			continue
		}
		if p, q, bad := overlapping(e.AllowedIPs, taken); bad {
			rej = append(rej, Rejection{e.Name, ReasonExternalOverlap, fmt.Sprintf("allowed IP %s overlaps %s, which is the cluster's or another peer's", p, q)})
			continue
		}
		if a, p, bad := coversAny(e.AllowedIPs, addrs, newPrefixSet(0)); bad {
			rej = append(rej, Rejection{e.Name, ReasonExternalOverlap, fmt.Sprintf("allowed IP %s covers node address %s", p, a)})
			continue
		}
		keys[e.PublicKey] = "peer " + e.Name
		taken = append(taken, e.AllowedIPs...)
		ok = append(ok, e)
	}
	return ok, rej
}

func overlapping(ps, taken []netip.Prefix) (netip.Prefix, netip.Prefix, bool) {
	for _, p := range ps {
		for _, t := range taken {
			if p.Overlaps(t) {
				return p, t, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}
