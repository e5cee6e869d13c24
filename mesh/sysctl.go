package mesh

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// LooseReversePath turns strict reverse-path filtering (rp_filter=1, as on
// RHEL and in kind's nodes) into loose (2). A pod's packet to another node's
// own address crosses the underlay, and the reply comes back to it through
// the tunnel, so under strict filtering the other node drops the pod's packet
// (its route to the pod is weft0, not the interface it came in on). Where
// /proc/sys is read-only (an unprivileged pod), it says what to set instead.
func LooseReversePath() error {
	const f = "/proc/sys/net/ipv4/conf/all/rp_filter"
	b, err := os.ReadFile(f)
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return nil
	}
	if err := os.WriteFile(f, []byte("2\n"), 0o644); err != nil {
		return fmt.Errorf("net.ipv4.conf.all.rp_filter is 1 (strict) and cannot be set to 2 (loose) here (%v); set it on the host", err)
	}
	return nil
}

// EnableForwarding makes the node route between pods, the tunnel and the
// underlay, as every network plugin must. Where it is already on, nothing
// is written, so an unprivileged container (read-only /proc/sys) works on
// hosts that forward already (kubeadm requires net.ipv4.ip_forward=1).
// Only the families of the node's pod ranges are needed: a single-stack
// IPv4 host need not forward IPv6 (a kind cluster built for IPv4 does not).
func EnableForwarding(podCIDRs []netip.Prefix) error {
	var files []string
	if len(podCIDRs) == 0 || slices.ContainsFunc(podCIDRs, func(p netip.Prefix) bool { return p.Addr().Is4() }) {
		files = append(files, "/proc/sys/net/ipv4/ip_forward")
	}
	if len(podCIDRs) == 0 || slices.ContainsFunc(podCIDRs, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
		files = append(files, "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %s is off and cannot be set (%v); set it on the host", f, err)
		}
	}
	return nil
}
