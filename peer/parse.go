package peer

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ParsePublicKey parses a base64 WireGuard public key.
func ParsePublicKey(s string) (wgtypes.Key, error) {
	if len(s) != 44 {
		return wgtypes.Key{}, errors.New("public key: want base64 of 32 bytes")
	}
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		return wgtypes.Key{}, errors.New("public key: want base64 of 32 bytes")
	}
	if k == (wgtypes.Key{}) {
		return wgtypes.Key{}, errors.New("public key: all zero")
	}
	return k, nil
}

// ParseEndpoint parses an ip:port WireGuard endpoint; names are not accepted,
// so a claim cannot point traffic at whatever a resolver says.
func ParseEndpoint(s string) (netip.AddrPort, error) {
	if len(s) > 64 {
		return netip.AddrPort{}, errors.New("endpoint: too long")
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: want ip:port", s)
	}
	a := ap.Addr().Unmap()
	if ap.Port() == 0 || a.Zone() != "" || !(a.IsGlobalUnicast() || a.IsPrivate()) {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: want a unicast ip and a port", s)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

func parseClaimedCIDRs(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 || len(ss) > 2 {
		return nil, fmt.Errorf("pod CIDRs: want one or two, got %d", len(ss))
	}
	ps, err := ParsePodCIDRs(ss)
	if err != nil {
		return nil, fmt.Errorf("pod CIDRs: %v", err)
	}
	return ps, nil
}

// ParseNetwork parses s as a network address: a CIDR without host bits.
// Its errors start with s quoted, for the caller to prefix with where s
// came from.
func ParseNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: not a CIDR", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q: host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// ParsePodCIDRs parses and checks a node's pod CIDRs (from a flag, a Node
// spec, gossip or the cache; callers name the source in their errors): network addresses, at
// most one per family, each with room for the node's own address and pods.
func ParsePodCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var v4, v6 bool
	for _, s := range ss {
		p, err := ParseNetwork(s)
		if err != nil {
			return nil, err
		}
		if err := checkPodCIDR(p); err != nil {
			return nil, fmt.Errorf("%q: %v", s, err)
		}
		if p.Addr().Is4() && v4 || p.Addr().Is6() && v6 {
			return nil, fmt.Errorf("%q: only one CIDR per address family", s)
		}
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
		out = append(out, p)
	}
	return out, nil
}

// checkPodCIDR rejects prefixes that cannot be a node's pod range: too small
// to hold the node's address and a pod, or so large they would swallow the
// underlay (a default route, a /1).
func checkPodCIDR(p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Zone() != "" {
		return errors.New("not a valid prefix")
	}
	bits := p.Addr().BitLen()
	switch {
	case p.Addr().Is4In6():
		return errors.New("IPv4-mapped IPv6 is not a pod range")
	case p.Bits() > bits-2:
		return fmt.Errorf("/%d is too small for a node's pods", p.Bits())
	case p.Bits() < bits/4:
		return fmt.Errorf("/%d is too large to be one node's pod range", p.Bits())
	case p.Addr().IsLoopback() || p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() || p.Addr().IsUnspecified():
		return errors.New("not a unicast range")
	}
	return nil
}

// locationRE is a Kubernetes label value: where the location comes from
// (topology.kubernetes.io/zone), and what the annotation and gossip carry.
var locationRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// ParseLocation checks a location name: empty (no location) or a label
// value of at most 63 characters.
func ParseLocation(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) > 63 || !locationRE.MatchString(s) {
		return "", fmt.Errorf("location %.80q: want a label value (letters, digits, '-', '_', '.'; at most 63)", s)
	}
	return s, nil
}

// ParseIntraLocation reads --intra-location and its annotation: "direct"
// is true, "encrypted" (or empty: the default) false.
func ParseIntraLocation(s string) (bool, error) {
	switch s {
	case "", IntraEncrypted:
		return false, nil
	case IntraDirect:
		return true, nil
	}
	return false, fmt.Errorf("intra-location %.40q: want %s or %s", s, IntraEncrypted, IntraDirect)
}

// The values of --intra-location.
const (
	IntraEncrypted = "encrypted"
	IntraDirect    = "direct"
)

// IntraLocation renders Direct as --intra-location would say it.
func IntraLocation(direct bool) string {
	if direct {
		return IntraDirect
	}
	return IntraEncrypted
}
