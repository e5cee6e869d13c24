// Command weft-demo builds a 3-node weft lab out of network namespaces,
// shows the mesh, an all-pairs reachability matrix and an iperf3 figure
// across it, then removes everything (also on Ctrl-C). Run it as root via
// `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/bench"
	"github.com/weftnet/weft/internal/netlab"
)

func main() {
	bins := flag.String("bin-dir", "bin", "directory holding weft-agent, weftctl and weft-cni")
	nodes := flag.Int("nodes", 3, "number of nodes")
	sweep := flag.Bool("sweep", false, "only remove what crashed lab runs left behind")
	flag.Parse()
	if *sweep {
		netlab.Sweep()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bins, *nodes); errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "weft-demo: interrupted; the lab is removed")
		os.Exit(130)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "weft-demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bins string, nodes int) (err error) {
	if nodes < 2 || nodes > 20 {
		return errors.New("--nodes: want 2-20")
	}
	bins, err = filepath.Abs(bins)
	if err != nil {
		return err
	}
	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down the lab")
		if cerr := lab.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	step("lab %s: underlay bridge in namespace %s, %d node namespaces", lab.ID, lab.Underlay, nodes)
	key, err := lab.WriteGossipKey()
	if err != nil {
		return err
	}
	var ns []*netlab.Node
	for i := 1; i <= nodes; i++ {
		n, err := lab.AddNode(fmt.Sprintf("node%d", i))
		if err != nil {
			return err
		}
		ns = append(ns, n)
	}
	for _, n := range ns {
		if _, err := n.Start(filepath.Join(bins, "weft-agent"), n.AgentArgs(key, ns[0])...); err != nil {
			return err
		}
		fmt.Printf("   %-6s underlay %-11s pod CIDRs %s\n", n.Name, n.Addr, joinPrefixes(n.PodCIDRs))
	}
	start := time.Now()
	if err := lab.WaitMesh(ctx, bins, 30*time.Second); err != nil {
		return err
	}
	step("mesh formed in %v; `weftctl peers` on %s:", time.Since(start).Round(time.Millisecond), ns[0].Name)
	out, err := ns[0].Run(ctx, filepath.Join(bins, "weftctl"), "peers")
	if err != nil {
		return err
	}
	fmt.Print(indent(out))

	step("pods: one per node, attached by weft-cni through libcni (as containerd does)")
	var pods []*netlab.Pod
	for _, n := range ns {
		if err := n.WaitCNIConf(ctx, 20*time.Second); err != nil {
			return err
		}
		p, err := n.AddPod(ctx, bins, "pod-"+n.Name)
		if err != nil {
			return err
		}
		fmt.Printf("   %-11s on %-6s %-12s %s\n", p.Name, n.Name, p.Addr(false), p.Addr(true))
		pods = append(pods, p)
	}

	step("reachability: ping from every pod and node to every pod (IPv4/IPv6), no NAT anywhere")
	matrix(ctx, ns, pods)

	step("iperf3: %s -> %s across the encrypted mesh (one TCP stream, 5 s)", pods[0].Name, pods[1].Name)
	bps, err := iperf(ctx, pods[0], pods[1])
	if err != nil {
		return err
	}
	fmt.Printf("   %.2f Gbit/s\n", bps/1e9)
	return ctx.Err()
}

// source is anything that can ping: a node or a pod.
type source struct {
	name string
	ping func(ctx context.Context, dst netip.Addr) bool
}

func matrix(ctx context.Context, ns []*netlab.Node, pods []*netlab.Pod) {
	var from []source
	for _, p := range pods {
		from = append(from, source{p.Name, func(ctx context.Context, dst netip.Addr) bool { return p.Ping(ctx, dst, 1) }})
	}
	for _, n := range ns {
		from = append(from, source{n.Name, func(ctx context.Context, dst netip.Addr) bool { return n.Ping(ctx, dst, 1, time.Second) }})
	}
	fmt.Printf("   %-11s", "from\\to")
	for _, to := range pods {
		fmt.Printf("%-12s", to.Name)
	}
	fmt.Println()
	failed := 0
	for _, f := range from {
		fmt.Printf("   %-11s", f.name)
		for _, to := range pods {
			var cell []string
			for _, v6 := range []bool{false, true} {
				if f.ping(ctx, to.Addr(v6)) {
					cell = append(cell, "ok")
				} else {
					cell = append(cell, "FAIL")
					failed++
				}
			}
			fmt.Printf("%-12s", strings.Join(cell, "/"))
		}
		fmt.Println()
	}
	if failed > 0 {
		fmt.Printf("   %d probes failed\n", failed)
	}
}

// iperf runs an iperf3 server in pod to and a client in pod from, with the
// bench harness's client.
func iperf(ctx context.Context, from, to *netlab.Pod) (float64, error) {
	srv := to.Command(ctx, "iperf3", "-s", "-1", "-B", to.Addr(false).String())
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	r, err := bench.Iperf(ctx, &bench.Path{Name: "weft", ClientNS: from.NS, ServerNS: to.NS, Server: to.Addr(false)}, 5*time.Second)
	return r.BitsPerSecond, err
}

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}
