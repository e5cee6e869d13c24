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
	Created    time.Time // the object's creationTimestamp: the older wins a range
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
// MaxExternalAllowedIPs network addresses (CheckExternalRange), an optional
// ip:port endpoint outside them (inside, the tunnel's own packets would be
// routed into the tunnel) and a keepalive in seconds. AcceptExternals
// checks it against the cluster.
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
		if err := CheckExternalRange(p); err != nil {
			return External{}, fmt.Errorf("spec.allowedIPs: %v", err)
		}
		e.AllowedIPs = append(e.AllowedIPs, p)
	}
	if s.Endpoint != "" {
		if e.Endpoint, err = ParseEndpoint(s.Endpoint); err != nil {
			return External{}, fmt.Errorf("spec.endpoint: %v", err)
		}
		for _, p := range e.AllowedIPs {
			if p.Contains(e.Endpoint.Addr()) {
				return External{}, fmt.Errorf("spec.endpoint: %s is inside the peer's own allowed IP %s (its tunnel packets would be routed into the tunnel)", e.Endpoint.Addr(), p)
			}
		}
	}
	if s.PersistentKeepalive < 0 || s.PersistentKeepalive > MaxExternalKeepalive {
		return External{}, fmt.Errorf("spec.persistentKeepalive: want 0-%d seconds", MaxExternalKeepalive)
	}
	e.Keepalive = time.Duration(s.PersistentKeepalive) * time.Second
	return e, nil
}

// CheckExternalRange reports why p cannot be a Peer object's range: a
// default route or wider than /8 for IPv4 and /32 for IPv6, or not unicast
// (loopback, link-local, multicast, unspecified, IPv4-mapped, zoned).
func CheckExternalRange(p netip.Prefix) error {
	ad := p.Addr()
	if p.Bits() < ad.BitLen()/4 || ad.IsLoopback() || ad.IsMulticast() || ad.IsLinkLocalUnicast() || ad.IsUnspecified() || ad.Is4In6() || ad.Zone() != "" {
		return fmt.Errorf("%s is not a unicast range a peer may own (at most /8 for IPv4, /32 for IPv6)", p)
	}
	return nil
}

// Reasons a Peer object is refused: its allowed IPs overlap a pod range, a
// node's address, or an earlier Peer object's; or they leave the ranges
// the cluster gives Peer objects (--external-cidr).
const (
	ReasonExternalOverlap Reason = "external-overlap"
	ReasonExternalOutside Reason = "external-outside"
)

// AcceptExternals decides which Peer objects join the mesh. Only ranges
// inside bounds.ExternalCIDRs may be taken (none: no Peer object is
// accepted). One whose key belongs to this node, a node or an earlier Peer
// object, or whose allowed IPs overlap the cluster's pod ranges, any
// node's pod CIDRs, any node's address, or an earlier Peer object's
// allowed IPs, is refused: a Peer object may never take traffic meant for
// a pod, a node, or a peer already there. "Earlier" is as for nodes: the
// Peer objects accepted last time (previous) first, then the older object,
// then the name. Nothing here depends on this node's own networks, so
// every node reaches the same answer.
func AcceptExternals(self NodeInfo, bounds Bounds, nodes []NodeInfo, ext []External, previous []string) ([]External, []Rejection) {
	prev := make(map[string]bool, len(previous))
	for _, n := range previous {
		prev[n] = true
	}
	slices.SortFunc(ext, func(a, b External) int {
		if prev[a.Name] != prev[b.Name] {
			if prev[a.Name] {
				return -1
			}
			return 1
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	keys := make(map[wgtypes.Key]string, len(nodes)+1)
	taken := make([]netip.Prefix, 0, len(bounds.ClusterCIDRs)+2*(len(nodes)+1))
	taken = append(taken, bounds.ClusterCIDRs...)
	addrs := make([]netip.Addr, 0, 2*(len(nodes)+1))
	for i := -1; i < len(nodes); i++ { // self, then the nodes, without a copy of them
		n := &self
		if i >= 0 {
			n = &nodes[i]
		}
		keys[n.PublicKey] = n.Name
		taken = append(taken, n.PodCIDRs...)
		addrs = appendAddresses(addrs, *n)
	}
	var ok []External
	var rej []Rejection
	for _, e := range ext {
		if p, outside := outsideAll(e.AllowedIPs, bounds.ExternalCIDRs); outside {
			detail := fmt.Sprintf("allowed IP %s is outside the ranges Peer objects may take (--external-cidr %s)", p, prefixList(bounds.ExternalCIDRs))
			if len(bounds.ExternalCIDRs) == 0 {
				detail = "no range is open to Peer objects (set the agent's --external-cidr)"
			}
			rej = append(rej, Rejection{e.Name, ReasonExternalOutside, detail})
			continue
		}
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

// outsideAll returns the first of ps that no prefix of within contains.
func outsideAll(ps, within []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range ps {
		if !slices.ContainsFunc(within, func(w netip.Prefix) bool { return w.Bits() <= p.Bits() && w.Contains(p.Addr()) }) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
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
