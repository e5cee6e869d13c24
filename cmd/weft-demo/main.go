// Command weft-demo builds a 3-node weft lab out of network namespaces,
// shows the mesh, an all-pairs reachability matrix and an iperf3 figure
// across it, then removes everything (also on Ctrl-C). Run it as root via
// `make demo`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/agent"
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

	step("reachability: ping from each node to every node's own pod-CIDR address (IPv4 / IPv6)")
	matrix(ctx, ns)

	step("iperf3: %s -> %s across the encrypted mesh (one TCP stream, 5 s)", ns[0].Name, ns[1].Name)
	bps, err := iperf(ctx, ns[0], ns[1])
	if err != nil {
		return err
	}
	fmt.Printf("   %.2f Gbit/s\n", bps/1e9)
	return ctx.Err()
}

func matrix(ctx context.Context, ns []*netlab.Node) {
	fmt.Printf("   %-8s", "from\\to")
	for _, to := range ns {
		fmt.Printf("%-12s", to.Name)
	}
	fmt.Println()
	for _, from := range ns {
		fmt.Printf("   %-8s", from.Name)
		for _, to := range ns {
			var cell []string
			for _, p := range to.PodCIDRs {
				if from.Ping(ctx, agent.FirstAddress(p), 1, time.Second) {
					cell = append(cell, "ok")
				} else {
					cell = append(cell, "FAIL")
				}
			}
			fmt.Printf("%-12s", strings.Join(cell, "/"))
		}
		fmt.Println()
	}
}

// iperf runs an iperf3 server on to's own pod-CIDR address and a client on from.
func iperf(ctx context.Context, from, to *netlab.Node) (float64, error) {
	dst := agent.FirstAddress(to.PodCIDRs[0])
	srv, err := to.Start("iperf3", "-s", "-1", "-B", dst.String())
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	// iperf3 -J reports "connection refused" in its JSON until the server listens.
	var lastErr string
	for i := 0; i < 50; i++ {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", from.NS, "iperf3", "-c", dst.String(), "-t", "5", "-J").Output()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var r struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			return 0, fmt.Errorf("iperf3 output: %v", err)
		}
		if r.Error == "" && r.End.SumReceived.BitsPerSecond > 0 {
			return r.End.SumReceived.BitsPerSecond, nil
		}
		lastErr = r.Error
		if ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("iperf3: %s", lastErr)
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
