package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func hasNamedPort(ports []networkingv1.NetworkPolicyPort) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.Type == intstr.String {
			return true
		}
	}
	return false
}

// resolvePorts turns policy ports into ranges. Named ports resolve against
// podPorts (the destination pod's containerPorts); with podPorts nil, named
// ports are left out. No policy ports means every port: nil.
func resolvePorts(ports []networkingv1.NetworkPolicyPort, podPorts []corev1.ContainerPort) []PortRange {
	var out []PortRange
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		switch {
		case p.Port == nil:
			out = append(out, PortRange{proto, 1, 65535})
		case p.Port.Type == intstr.String: // named
			for _, cp := range podPorts {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == p.Port.StrVal && cpProto == proto && cp.ContainerPort > 0 && cp.ContainerPort < 65536 {
					out = append(out, PortRange{proto, uint16(cp.ContainerPort), uint16(cp.ContainerPort)})
				}
			}
		default:
			from := p.Port.IntVal
			to := from
			if p.EndPort != nil && *p.EndPort >= from {
				to = *p.EndPort
			}
			if from >= 1 && to <= 65535 {
				out = append(out, PortRange{proto, uint16(from), uint16(to)})
			}
		}
	}
	slices.SortFunc(out, func(a, b PortRange) int {
		if a.Protocol != b.Protocol {
			if a.Protocol < b.Protocol {
				return -1
			}
			return 1
		}
		return int(a.From) - int(b.From)
	})
	return slices.Compact(out)
}
