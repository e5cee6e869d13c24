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
	if err := agent.Run(ctx, cfg, log); err != nil {
		fmt.Fprintf(os.Stderr, "weft-agent: %v\n", err)
		os.Exit(1)
	}
}
