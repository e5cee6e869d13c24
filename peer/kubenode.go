package peer

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/api"
)

// LocationOf is a Node's location: its weft.dev/location annotation, else
// the value of topologyLabel ("" when neither is set). A value that is not
// a valid location is an error, never a silent "no location".
func LocationOf(n *corev1.Node, topologyLabel string) (string, error) {
	v, ok := n.Annotations[api.AnnotationLocation]
	what := api.AnnotationLocation
	if !ok {
		v, what = n.Labels[topologyLabel], "label "+topologyLabel
	}
	loc, err := ParseLocation(v)
	if err != nil {
		return "", fmt.Errorf("%s: %v", what, err)
	}
	return loc, nil
}

// SelfFromNode reads this node's pod CIDRs and InternalIP from its Node.
func SelfFromNode(n *corev1.Node) ([]netip.Prefix, netip.Addr, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var ps []netip.Prefix
	if len(cidrs) > 0 {
		var err error
		if ps, err = ParsePodCIDRs(cidrs); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("node %s spec.podCIDRs %v", n.Name, err)
		}
	}
	var ip netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if p, err := netip.ParseAddr(a.Address); err == nil && !ip.IsValid() {
				ip = p.Unmap()
			}
		}
	}
	return ps, ip, nil
}

// NodeInfoFromNode validates another Node's weft annotations and pod CIDRs.
// ok is false when the Node carries no weft annotations yet (its agent has
// not started): that is not an error. Everything here is untrusted: a
// tenant who may edit annotations must not be able to take another node's
// range (the registry checks overlaps) or point a node's traffic at an
// address that is not the node's own.
func NodeInfoFromNode(n *corev1.Node, topologyLabel string) (info NodeInfo, ok bool, err error) {
	key, hasKey := n.Annotations[api.AnnotationPublicKey]
	ep, hasEP := n.Annotations[api.AnnotationEndpoint]
	ga := n.Annotations[api.AnnotationGossipAddress]
	intra := n.Annotations[api.AnnotationIntraLocation]
	nat := n.Annotations[api.AnnotationBehindNAT]
	if !hasKey && !hasEP {
		return NodeInfo{}, false, nil
	}
	for _, v := range []string{key, ep, ga, intra, nat} {
		if len(v) > api.MaxAnnotationSize {
			return NodeInfo{}, true, fmt.Errorf("a weft.dev annotation is %d bytes, over %d", len(v), api.MaxAnnotationSize)
		}
	}
	info = NodeInfo{Name: n.Name, Created: n.CreationTimestamp.Time}
	if info.PublicKey, err = ParsePublicKey(key); err != nil {
		return NodeInfo{}, true, fmt.Errorf("%s: %v", api.AnnotationPublicKey, err)
	}
	if info.Endpoint, err = ParseEndpoint(ep); err != nil {
		return NodeInfo{}, true, fmt.Errorf("%s: %v", api.AnnotationEndpoint, err)
	}
	if ga != "" {
		if info.GossipAddr, err = ParseEndpoint(ga); err != nil {
			return NodeInfo{}, true, fmt.Errorf("%s: %v", api.AnnotationGossipAddress, err)
		}
	}
	addrs := map[netip.Addr]bool{}
	for _, a := range n.Status.Addresses {
		if p, err := netip.ParseAddr(a.Address); err == nil {
			addrs[p.Unmap()] = true
		}
	}
	for a := range addrs {
		info.NodeAddrs = append(info.NodeAddrs, a)
	}
	slices.SortFunc(info.NodeAddrs, netip.Addr.Compare)
	if !addrs[info.Endpoint.Addr()] {
		return NodeInfo{}, true, fmt.Errorf("%s %s is not one of the Node's addresses", api.AnnotationEndpoint, info.Endpoint)
	}
	if info.GossipAddr.IsValid() && !addrs[info.GossipAddr.Addr()] {
		return NodeInfo{}, true, fmt.Errorf("%s %s is not one of the Node's addresses", api.AnnotationGossipAddress, info.GossipAddr)
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if info.PodCIDRs, err = parseClaimedCIDRs(cidrs); err != nil {
		return NodeInfo{}, true, fmt.Errorf("spec.podCIDRs: %v", err)
	}
	if info.Location, err = LocationOf(n, topologyLabel); err != nil {
		return NodeInfo{}, true, err
	}
	if info.Direct, err = ParseIntraLocation(intra); err != nil {
		return NodeInfo{}, true, fmt.Errorf("%s: %v", api.AnnotationIntraLocation, err)
	}
	switch nat {
	case "", "false":
	case "true":
		info.BehindNAT = true
	default:
		return NodeInfo{}, true, fmt.Errorf("%s %.20q: want true or false", api.AnnotationBehindNAT, nat)
	}
	return info, true, nil
}
