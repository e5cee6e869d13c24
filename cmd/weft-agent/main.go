// Command weft-agent runs weft's node agent: the in-process WireGuard data
// plane, gossip discovery and the HTTP API. See agent.ParseFlags for flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/agent"
)

func main() {
	cfg, err := agent.ParseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-agent: %v\n", err)
		os.Exit(2)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
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
	if err := agent.Run(ctx, cfg, log, resync); err != nil {
		fmt.Fprintf(os.Stderr, "weft-agent: %v\n", err)
		os.Exit(1)
	}
}
