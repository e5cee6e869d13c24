package kubernetes

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestServicesAndDNS runs the real kube-proxy (nftables mode) on every node
// and the real CoreDNS as a pod, over weft. EndpointSlices are written by the
// harness (there is no kube-controller-manager in the lab).
//
//   - a client pod on node3 reaches a ClusterIP backed by pods on node1 and
//     node2, is balanced across both, and each backend sees the client
//     pod's own address (no NAT on pod -> Service -> pod);
//   - a NodePort Service answers a host outside the cluster;
//   - <svc>.<ns>.svc.cluster.local resolves through the kube-dns Service;
//   - two containers of one pod talk over localhost;
//   - hostPort works through the portmap plugin in weft's conflist.
func TestServicesAndDNS(t *testing.T) {
	k := labtest.NewKubeMesh(t, 3)
	ctx := context.Background()
	for _, n := range k.Lab.Nodes() {
		k.WaitCNIConf(n)
		p, err := k.Cp.StartKubeProxy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		k.Agents["kube-proxy-"+n.Name] = p
	}
	n1, n2, n3 := k.Lab.Nodes()[0], k.Lab.Nodes()[1], k.Lab.Nodes()[2]
	b1, b2, client := k.AddPod(n1, "web-1"), k.AddPod(n2, "web-2"), k.AddPod(n3, "client")
	seen1, seen2 := labtest.ListenIn(t, b1.Do, ":8080"), labtest.ListenIn(t, b2.Do, ":8080")

	port := corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}
	svc, err := k.Cp.CreateService(ctx, "default", "web", corev1.ServiceTypeClusterIP, "", []corev1.ServicePort{port}, []*netlab.Pod{b1, b2})
	if err != nil {
		t.Fatal(err)
	}
	np := port
	np.NodePort = 30080
	if _, err := k.Cp.CreateService(ctx, "default", "web-nodeport", corev1.ServiceTypeNodePort, "", []corev1.ServicePort{np}, []*netlab.Pod{b1, b2}); err != nil {
		t.Fatal(err)
	}
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	for _, n := range k.Lab.Nodes() {
		if err := n.WaitKubeProxy(ctx, clusterIP.String(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ClusterIP balances and keeps the client's address", func(t *testing.T) {
		hits := map[string]int{}
		for i := 0; i < 30; i++ {
			if err := labtest.DialFrom(client.Do, netip.AddrPortFrom(clusterIP, 80)); err != nil {
				t.Fatalf("client pod -> %s:80: %v", clusterIP, err)
			}
			select {
			case src := <-seen1:
				hits["web-1"]++
				if src != client.Addr(false) {
					t.Fatalf("web-1 saw %s, want the client pod's %s", src, client.Addr(false))
				}
			case src := <-seen2:
				hits["web-2"]++
				if src != client.Addr(false) {
					t.Fatalf("web-2 saw %s, want the client pod's %s", src, client.Addr(false))
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no backend saw the connection")
			}
		}
		if hits["web-1"] == 0 || hits["web-2"] == 0 {
			t.Fatalf("30 connections went %v: not balanced across the two nodes' backends", hits)
		}
		t.Logf("30 connections to %s:80: %v", clusterIP, hits)
	})

	t.Run("NodePort from outside the cluster", func(t *testing.T) {
		out, err := k.Lab.AddOutside()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []*netlab.Node{n1, n3} { // a node with a backend and one without
			if err := labtest.DialFrom(out.Do, netip.AddrPortFrom(n.Addr, 30080)); err != nil {
				t.Errorf("outside -> %s:30080: %v", n.Addr, err)
				continue
			}
			select {
			case <-seen1:
			case <-seen2:
			case <-time.After(3 * time.Second):
				t.Errorf("NodePort on %s reached no backend", n.Name)
			}
		}

		hp, err := n1.AddPodWith(ctx, k.Bins, "hostport", map[string]any{"portMappings": []map[string]any{
			{"hostPort": 8081, "containerPort": 8080, "protocol": "tcp"}}})
		if err != nil {
			t.Fatal(err)
		}
		hpSeen := labtest.ListenIn(t, hp.Do, ":8080")
		if err := labtest.DialFrom(out.Do, netip.AddrPortFrom(n1.Addr, 8081)); err != nil {
			t.Fatalf("outside -> node1 hostPort 8081: %v", err)
		}
		select {
		case <-hpSeen:
		case <-time.After(3 * time.Second):
			t.Fatal("hostPort reached no pod")
		}
	})

	t.Run("DNS through CoreDNS", func(t *testing.T) {
		if _, err := k.Cp.StartCoreDNS(ctx, n2, k.Bins); err != nil {
			t.Fatal(err)
		}
		if err := n3.WaitKubeProxy(ctx, netlab.ClusterDNS, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var c net.Conn
			err := client.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, netlab.ClusterDNS+":53")
				return err
			})
			return c, err
		}}
		var addrs []string
		labtest.Eventually(t, 30*time.Second, "web.default.svc.cluster.local resolves", func() bool {
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			addrs, err = r.LookupHost(lctx, "web.default.svc.cluster.local")
			return err == nil
		})
		if len(addrs) != 1 || addrs[0] != clusterIP.String() {
			t.Fatalf("web.default.svc.cluster.local = %v, want %s", addrs, clusterIP)
		}
	})

	t.Run("containers of one pod share localhost", func(t *testing.T) {
		seen := labtest.ListenIn(t, client.Do, "127.0.0.1:9000")
		// A second process in the sandbox's namespace is a second container.
		if out, err := client.Command(ctx, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9000").CombinedOutput(); err != nil {
			t.Fatalf("second container -> localhost:9000: %v %s", err, out)
		}
		if got := <-seen; got != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("saw %s", got)
		}
	})
}
