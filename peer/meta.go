package peer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/api"
)

// MaxMetaSize is memberlist's limit on a member's metadata and so on ours.
const MaxMetaSize = 512

// metaV1 is the wire form of a NodeInfo in gossip metadata.
type metaV1 struct {
	V        int      `json:"v"`
	Key      string   `json:"k"`
	Endpoint string   `json:"e"`
	CIDRs    []string `json:"c"`
	// Location and direct intra-location routing; omitted when unset, so
	// a node without them announces what earlier versions read.
	Location string `json:"l,omitempty"`
	Direct   bool   `json:"d,omitempty"`
	// Addrs: the node's underlay address of the other family, if any.
	Addrs []string `json:"a,omitempty"`
	NAT   bool     `json:"n,omitempty"`
}

// EncodeMeta renders n for gossip.
func EncodeMeta(n NodeInfo) ([]byte, error) {
	m := metaV1{V: 1, Key: n.PublicKey.String(), Endpoint: n.Endpoint.String(), CIDRs: api.PrefixStrings(n.PodCIDRs),
		Location: n.Location, Direct: n.Direct, NAT: n.BehindNAT}
	for _, a := range n.NodeAddrs {
		if a != n.Endpoint.Addr() {
			m.Addrs = append(m.Addrs, a.String())
		}
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
	if n.Location, err = ParseLocation(m.Location); err != nil {
		return NodeInfo{}, err
	}
	n.Direct, n.BehindNAT = m.Direct, m.NAT
	if len(m.Addrs) > 1 {
		return NodeInfo{}, fmt.Errorf("metadata names %d other addresses, at most 1", len(m.Addrs))
	}
	for _, s := range m.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || !(a.IsGlobalUnicast() || a.IsPrivate()) || a.Is4() == n.Endpoint.Addr().Is4() {
			return NodeInfo{}, fmt.Errorf("metadata address %.50q: want a unicast address of the other family than the endpoint's", s)
		}
		// The endpoint's address is one of the node's too, as a Node
		// object's status would list it (see ownsAddr).
		n.NodeAddrs = []netip.Addr{n.Endpoint.Addr(), a}
	}
	return n, nil
}
