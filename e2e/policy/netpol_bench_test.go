package policy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weftnet/weft/bench"
	"github.com/weftnet/weft/internal/netlab"
)

// BenchmarkNetworkPolicy measures pod to pod across nodes (y/a on node2 to
// x/a on node1) with no policy and with 100 policies selecting the server:
// iperf3 TCP throughput (one stream) and new TCP connections per second
// (4 workers, connect and close). 99 of the policies admit namespaces that
// do not exist; one admits y. Run it with `make bench-policy`.
func BenchmarkNetworkPolicy(b *testing.B) {
	l := newNPLab(b)
	server, client := l.by["x/a"], l.by["y/a"]
	srv, err := server.pod.Start("iperf3", "-s")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	// Connection churn leaves the client's ports in TIME_WAIT; let it reuse them.
	if out, err := client.pod.Command(context.Background(), "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1").CombinedOutput(); err != nil {
		b.Fatalf("sysctl: %v %s", err, out)
	}
	path := &bench.Path{Name: "pod-pod", ClientNS: client.pod.NS, ServerNS: server.pod.NS, Server: server.addr(false)}
	for _, n := range []int{0, 100} {
		var pols []*networkingv1.NetworkPolicy
		for i := range n {
			ns := fmt.Sprintf("absent-%d", i)
			if i == n-1 {
				ns = "y"
			}
			pols = append(pols, ingressXA(fmt.Sprintf("p%03d", i),
				rule{peers: peers(namespaces(sel("ns", ns))), ports: ports(tcpPort(80), tcpPort(5201))}))
		}
		l.syncPolicies(pols)
		time.Sleep(2 * time.Second)
		if !connect(client.pod.Do, probe{"tcp", 80, false}, server.addr(false), time.Second) {
			b.Fatal("the client cannot reach the server")
		}
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			var gbps, cps float64
			for range b.N {
				tp, err := bench.Iperf(context.Background(), path, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				gbps += tp.BitsPerSecond / 1e9
				cps += connRate(b, client.pod, netip.AddrPortFrom(server.addr(false), 80), 3*time.Second)
			}
			b.ReportMetric(gbps/float64(b.N), "Gbit/s")
			b.ReportMetric(cps/float64(b.N), "conn/s")
			b.ReportMetric(0, "ns/op")
			// What the server's node holds: rules in weft's policy chains.
			out, err := server.node.Run(context.Background(), "nft", "list", "table", "inet", "weft")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(strings.Count(out, " accept\n")-strings.Count(out, "established,related accept\n")), "policy-rules")
		})
	}
	l.syncPolicies(nil)
}

// connRate opens and closes TCP connections from the pod for d with four
// workers and returns connections per second.
func connRate(b *testing.B, from *netlab.Pod, dst netip.AddrPort, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from.Do(func() error {
				for time.Now().Before(deadline) {
					c, err := net.DialTimeout("tcp", dst.String(), time.Second)
					if err != nil {
						return err
					}
					c.Close()
					n.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}
