package bench

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ServiceIP is the ClusterIP of the bench's Service in front of weft's
// server pod; the multi-flow run's Services follow it (one per pod pair).
var ServiceIP = netip.MustParseAddr("10.96.0.50")

// service is pod to Service over weft: the real kube-proxy (nftables mode,
// talking to a real API server) on the client node DNATs a ClusterIP to
// weft's server pod on the other node, which the encrypted tunnel carries.
// Each multi-flow pair has a Service of its own, so that kube-proxy's
// choice of backend cannot put two flows on one pod.
func (l *Lab) service(ctx context.Context, controlPlaneDir string, weft *Path) (*Path, error) {
	cp, err := l.StartControlPlane(ctx, controlPlaneDir)
	if err != nil {
		return nil, err
	}
	client := weft.pods[0][0].Node
	if _, err := cp.RegisterNode(ctx, client); err != nil {
		return nil, err
	}
	if _, err := cp.StartKubeProxy(ctx, client); err != nil {
		return nil, err
	}
	tcp := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port)}
	}
	p := &Path{Name: "weft-service", Description: "weft, pod to a ClusterIP Service (kube-proxy, nftables) on another node",
		ClientNS: weft.ClientNS, ServerNS: weft.ServerNS, Server: ServiceIP, procs: weft.procs, NoICMP: true}
	ports := []corev1.ServicePort{tcp("iperf", 5201), tcp("rr", 5202),
		{Name: "iperf-udp", Port: 5201, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5201)}}
	if _, err := cp.CreateService(ctx, "default", "bench", corev1.ServiceTypeClusterIP, ServiceIP.String(), ports, weft.pods[1][:1]); err != nil {
		return nil, err
	}
	last := ServiceIP
	for j, f := range weft.Flows {
		last = last.Next()
		port := int32(f.Port)
		if _, err := cp.CreateService(ctx, "default", fmt.Sprintf("bench-flow%d", j+1), corev1.ServiceTypeClusterIP, last.String(),
			[]corev1.ServicePort{tcp("iperf", port)}, weft.pods[1][j:j+1]); err != nil {
			return nil, err
		}
		p.Flows = append(p.Flows, Flow{ClientNS: f.ClientNS, ServerNS: f.ServerNS, Server: last, Port: f.Port})
	}
	if err := client.WaitKubeProxy(ctx, last.String(), 60*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}
