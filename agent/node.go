package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// NodeInfo is what one node claims about itself: who it is on the mesh and
// which pod ranges it routes.
type NodeInfo struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort // WireGuard endpoint on the underlay
	GossipAddr netip.AddrPort // memberlist address, used as a seed after restart
	PodCIDRs   []netip.Prefix
}

// MaxMetaSize is memberlist's limit on a member's metadata and so on ours.
const MaxMetaSize = 512

// metaV1 is the wire form of a NodeInfo in gossip metadata.
type metaV1 struct {
	V        int      `json:"v"`
	Key      string   `json:"k"`
	Endpoint string   `json:"e"`
	CIDRs    []string `json:"c"`
}

// EncodeMeta renders n for gossip.
func EncodeMeta(n NodeInfo) ([]byte, error) {
	m := metaV1{V: 1, Key: n.PublicKey.String(), Endpoint: n.Endpoint.String()}
	for _, p := range n.PodCIDRs {
		m.CIDRs = append(m.CIDRs, p.String())
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("node metadata is %d bytes, over the %d-byte gossip limit", len(b), MaxMetaSize)
	}
	return b, nil
}

// DecodeMeta parses and validates another node's gossip metadata. Everything
// in it is untrusted: sizes are bounded and every field checked.
func DecodeMeta(name string, b []byte) (NodeInfo, error) {
	if len(b) > MaxMetaSize {
		return NodeInfo{}, fmt.Errorf("metadata of %d bytes is over %d", len(b), MaxMetaSize)
	}
	var m metaV1
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return NodeInfo{}, fmt.Errorf("metadata is not valid: %v", err)
	}
	if m.V != 1 {
		return NodeInfo{}, fmt.Errorf("metadata version %d is not supported", m.V)
	}
	n := NodeInfo{Name: name}
	var err error
	if n.PublicKey, err = ParsePublicKey(m.Key); err != nil {
		return NodeInfo{}, err
	}
	if n.Endpoint, err = ParseEndpoint(m.Endpoint); err != nil {
		return NodeInfo{}, err
	}
	if n.PodCIDRs, err = parseClaimedCIDRs(m.CIDRs); err != nil {
		return NodeInfo{}, err
	}
	return n, nil
}

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

// FirstAddress is the address a node owns in each of its pod CIDRs
// (10.244.1.1 in 10.244.1.0/24): its source for traffic to remote pods.
func FirstAddress(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}
