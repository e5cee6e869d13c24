// Command weft-bench runs weft's benchmark harness (`make bench`), and the
// small helpers it runs inside lab namespaces: a TCP request/response server
// and client, and wg-configure, which configures a WireGuard device through
// wgctrl. `weft-bench gossip` measures memberlist profiles (gossip.go),
// `weft-bench gossip-scale` memberlist over many processes (gossipscale.go).
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/bench"
)

func main() {
	var err error
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "rr-server":
			err = rrServer(os.Args[2:])
		case "rr-client":
			err = rrClient(os.Args[2:])
		case "wg-configure":
			err = wgConfigure(os.Args[2:])
		case "table":
			err = table(os.Args[2:])
		case "gossip":
			err = gossipProfiles(os.Args[2:])
		case "gossip-scale":
			err = gossipScale(os.Args[2:])
		case "lab":
			err = keepLab(os.Args[2:])
		default:
			err = runBench(os.Args[1:])
		}
	} else {
		err = runBench(nil)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-bench: %v\n", err)
		os.Exit(1)
	}
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("weft-bench", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "bin", "directory with weft's binaries, wireguard-go and the reference CNI plugins")
	out := fs.String("out", "bench/results", "directory for the results")
	reps := fs.Int("reps", 3, "repetitions of every measurement")
	dur := fs.Duration("duration", 5*time.Second, "length of each throughput and request/response run")
	udp := fs.String("udp-rate", "auto", "iperf3 UDP rate (auto: the highest of 4G, 2G, 1G, 500M, 200M, 100M the raw underlay carries with < 1 % loss)")
	pings := fs.Int("pings", 200, "pings per repetition (10 ms apart)")
	pods := fs.Int("cni-pods", 40, "ADDs (then DELs) per CNI measurement")
	cpDir := fs.String("controlplane-dir", os.Getenv("WEFT_CONTROLPLANE_DIR"), "directory with etcd, kube-apiserver and kube-proxy (make controlplane) for the pod-to-Service path; empty leaves that path out")
	pairs := fs.Int("pairs", 20, "back-to-back runs of wireguard-go and weft that decide the targets (0: the repetitions decide)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *reps < 1 || *dur < time.Second || *pairs < 0 {
		return errors.New("--reps must be ≥ 1, --duration ≥ 1s and --pairs ≥ 0")
	}
	bins, err := filepath.Abs(*binDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Config{BinDir: bins, ControlPlaneDir: *cpDir, Reps: *reps, Duration: *dur, UDPRate: *udp,
		Pings: *pings, CNIPods: *pods, Pairs: *pairs, Log: os.Stdout})
	if err != nil {
		return err
	}
	md, err := bench.Write(res, *out)
	if err != nil {
		return err
	}
	fmt.Printf("\n%s\nwritten to %s\n", md, *out)
	return nil
}

// keepLab builds the bench lab, prints each path's two ends and waits for
// SIGINT or SIGTERM, then tears the lab down.
func keepLab(args []string) error {
	fs := flag.NewFlagSet("weft-bench lab", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "bin", "directory with weft's binaries, wireguard-go and the reference CNI plugins")
	cpDir := fs.String("controlplane-dir", os.Getenv("WEFT_CONTROLPLANE_DIR"), "directory with etcd, kube-apiserver and kube-proxy; empty leaves the pod-to-Service path out")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bins, err := filepath.Abs(*binDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := bench.NewLab(ctx, bins, *cpDir)
	if err != nil {
		return err
	}
	defer lab.Close()
	for _, p := range lab.Paths {
		fmt.Printf("%-24s client netns %s -> server netns %s, %s\n", p.Name, p.ClientNS, p.ServerNS, p.Server)
	}
	fmt.Println("the lab stays up until interrupted")
	<-ctx.Done()
	return nil
}

// rrServer answers each byte with a byte, for transaction-rate measurements.
func rrServer(args []string) error {
	fs := flag.NewFlagSet("rr-server", flag.ContinueOnError)
	listen := fs.String("listen", ":5202", "address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.(*net.TCPConn).SetNoDelay(true)
			b := make([]byte, 1)
			for {
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}()
	}
}

// rrClient sends one byte and waits for the answer, over and over, and
// prints transactions per second.
func rrClient(args []string) error {
	fs := flag.NewFlagSet("rr-client", flag.ContinueOnError)
	target := fs.String("target", "", "server address")
	d := fs.Duration("duration", 5*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", *target, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	b := []byte{1}
	n := 0
	start := time.Now()
	for time.Since(start) < *d {
		if _, err := c.Write(b); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		n++
	}
	fmt.Printf("%.1f\n", float64(n)/time.Since(start).Seconds())
	return nil
}

// wgConfigure configures a WireGuard device through wgctrl: a private key,
// a listen port and peers given as key,endpoint,allowed-ip[;allowed-ip].
func wgConfigure(args []string) error {
	fs := flag.NewFlagSet("wg-configure", flag.ContinueOnError)
	iface := fs.String("interface", "", "device name")
	keyFile := fs.String("private-key-file", "", "file with the base64 private key")
	port := fs.Int("listen-port", 51820, "listen port")
	var peers []string
	fs.Func("peer", "key,endpoint,allowed-ip[;allowed-ip] (repeatable)", func(s string) error { peers = append(peers, s); return nil })
	if err := fs.Parse(args); err != nil {
		return err
	}
	kb, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	key, err := wgtypes.ParseKey(strings.TrimSpace(string(kb)))
	if err != nil {
		return err
	}
	cfg := wgtypes.Config{PrivateKey: &key, ListenPort: port, ReplacePeers: true}
	for _, p := range peers {
		f := strings.Split(p, ",")
		if len(f) != 3 {
			return fmt.Errorf("--peer %q: want key,endpoint,allowed-ips", p)
		}
		if _, err := base64.StdEncoding.DecodeString(f[0]); err != nil {
			return fmt.Errorf("--peer key: %v", err)
		}
		pk, err := wgtypes.ParseKey(f[0])
		if err != nil {
			return err
		}
		ep, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return err
		}
		pc := wgtypes.PeerConfig{PublicKey: pk, Endpoint: net.UDPAddrFromAddrPort(ep), ReplaceAllowedIPs: true}
		for _, a := range strings.Split(f[2], ";") {
			_, n, err := net.ParseCIDR(a)
			if err != nil {
				return err
			}
			pc.AllowedIPs = append(pc.AllowedIPs, *n)
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	c, err := wgctrl.New()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.ConfigureDevice(*iface, cfg)
}

// table prints the bench table for an in-cluster iperf3 log (bench/k8s/run.sh).
func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	name := fs.String("name", "cluster", "path name for the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: weft-bench table [--name NAME] IPERF_LOG")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	r, err := bench.ParseIperfLog(*name, b)
	if err != nil {
		return err
	}
	fmt.Print(bench.Markdown(r, ""))
	return nil
}
