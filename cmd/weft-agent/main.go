// Command weft-agent runs weft's node agent: the in-process WireGuard data
// plane, gossip and Kubernetes discovery, and the HTTP API. See
// config.Parse for flags. Helper commands serve the DaemonSet:
//
//	weft-agent install-cni [--from DIR] [--to DIR]      (init container)
//	weft-agent ensure-gossip-key [--namespace NS] [--secret NAME] [--kubeconfig F]   (install Job)
//	weft-agent ready --file F                            (readiness probe: F is the agent's --ready-file)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/agent/config"
	"github.com/weftnet/weft/agent/install"
	"github.com/weftnet/weft/kubeclient"
)

// defaultGCPercent is the agent's GOGC unless the environment sets one.
const defaultGCPercent = 50

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "install-cni":
			exit(installCNI(os.Args[2:]))
		case "ensure-gossip-key":
			exit(ensureGossipKey(os.Args[2:]))
		case "ready":
			exit(ready(os.Args[2:]))
		}
	}
	cfg, err := config.Parse(os.Args[1:], os.Getenv)
	if ue := (*config.UsageError)(nil); errors.As(err, &ue) {
		fmt.Print(ue.Text)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-agent: %v\n", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		exit(err) // config.Parse allows only levels slog knows
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GOGC") == "" {
		// Go's default (100) lets garbage grow to as much as is live
		// before a collection. A third of the agent's live heap is
		// wireguard-go's fixed receive and TUN buffers (3 x 8 MiB,
		// never garbage and mostly never written, so not resident),
		// which at 100 buy room for as much garbage, which is. The
		// collector's work at 50 is still too small to show in a
		// profile under iperf3 (README, "Memory at 5000").
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP forces a reconcile, for operators and for tests of the no-op path.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	resync := make(chan struct{})
	go func() {
		for range hup {
			resync <- struct{}{}
		}
	}()
	err = agent.Run(ctx, cfg, log, resync)
	if errors.Is(err, agent.ErrHandedOver) {
		// The successor runs the data plane. Exiting now would have a
		// supervisor (the kubelet, systemd) start this agent again, and
		// it would take the data plane back: wait to be stopped.
		log.Info("handed over; waiting to be stopped")
		<-ctx.Done()
		err = nil
	}
	exit(err)
}

func exit(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-agent: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func installCNI(args []string) error {
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	from := fs.String("from", "/opt/weft/cni", "directory holding the plugins in the image")
	to := fs.String("to", "/host/opt/cni/bin", "the host's CNI binary directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plugins := []string{"weft-cni", "portmap", "loopback"}
	if err := install.CNI(*from, *to, plugins); err != nil {
		return err
	}
	fmt.Printf("installed %v into %s\n", plugins, *to)
	return nil
}

func ensureGossipKey(args []string) error {
	fs := flag.NewFlagSet("ensure-gossip-key", flag.ContinueOnError)
	ns := fs.String("namespace", "weft-system", "namespace of the Secret")
	name := fs.String("secret", "weft-gossip", "name of the Secret")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client, err := kubeclient.NewClients(*kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := install.GossipKey(ctx, client, *ns, *name)
	if err != nil {
		return err
	}
	if created {
		fmt.Printf("created gossip key Secret %s/%s\n", *ns, *name)
	} else {
		fmt.Printf("gossip key Secret %s/%s exists; left unchanged\n", *ns, *name)
	}
	return nil
}

// ready is the DaemonSet's readiness probe: the agent of this pod runs the
// data plane (its --ready-file exists).
func ready(args []string) error {
	fs := flag.NewFlagSet("ready", flag.ContinueOnError)
	file := fs.String("file", "/run/weft/ready", "the agent's --ready-file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*file); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	return nil
}
