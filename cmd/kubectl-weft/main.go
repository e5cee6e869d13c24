// Command kubectl-weft is `kubectl weft`: weft's agents as seen from the
// cluster, through the API server only (no SSH, no node access). It reaches
// each agent's HTTP API by port-forwarding to its pod (RBAC: pods/portforward
// in weft's namespace), reads logs (pods/log), Nodes and Events, and rotates
// a node's key through the agent pod's exec (pods/exec).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const usage = `usage: kubectl weft [--kubeconfig FILE] [--context NAME] [-n NAMESPACE] COMMAND [flags]

  status [--matrix] [-o table|json]   one line per node: version, ready, peers
                                      up / resting / failing, PSK mode, strict,
                                      key age, traffic; --matrix: every node ×
                                      every peer (handshake, path, PSK, MTU),
                                      problems first
  graph [-o dot|svg] [--node NODE]    the mesh (as one agent sees it; every
                                      agent sees the whole mesh)
  showconf node NAME | peer NAME [--node NODE]
                                      a wg-quick configuration (weftctl showconf)
  rotate-key NODE                     give NODE a new WireGuard key (exec in its
                                      agent pod: weftctl rotate-key)
  sysdump [-o FILE]                   a tarball for a bug report: every agent's
                                      status, metrics, logs, nftables table,
                                      WireGuard device (keys hidden), the Nodes'
                                      weft annotations and weft's Events
`

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubectl weft: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("kubectl-weft", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usage+"\nflags:\n"); fs.PrintDefaults() }
	var o options
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "the kubeconfig context to use")
	fs.StringVar(&o.namespace, "n", "weft-system", "weft's namespace")
	fs.StringVar(&o.namespace, "namespace", "weft-system", "weft's namespace")
	fs.StringVar(&o.selector, "selector", "app.kubernetes.io/name=weft", "the agent pods' label selector")
	fs.IntVar(&o.port, "port", 9587, "the agents' HTTP port (the chart's httpPort)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long a command may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := connect(o)
	if err != nil {
		return err
	}
	c.errOut = errOut
	sub := flag.NewFlagSet(fs.Arg(0), flag.ContinueOnError)
	sub.SetOutput(errOut)
	rest := fs.Args()[1:]
	switch cmd := fs.Arg(0); cmd {
	case "status":
		matrix := sub.Bool("matrix", false, "every node × every peer, problems first")
		output := sub.String("o", "table", "table or json")
		if err := sub.Parse(rest); err != nil {
			return err
		}
		return c.status(ctx, *matrix, *output, out)
	case "graph", "showconf":
		node := sub.String("node", "", "the node whose agent answers (default: any ready one)")
		output, svc := "dot", ""
		if cmd == "graph" {
			sub.StringVar(&output, "o", "dot", "dot or svg")
		} else {
			sub.StringVar(&svc, "service-cidr", "", "also route the Service range through the mesh (peer configs)")
		}
		if err := sub.Parse(interleave(rest)); err != nil {
			return err
		}
		weftctl := []string{"graph", "-o", output}
		if cmd == "showconf" {
			weftctl = append([]string{"showconf"}, sub.Args()...)
			if svc != "" {
				weftctl = append(weftctl, "--service-cidr", svc)
			}
		}
		return c.weftctl(ctx, *node, weftctl, out)
	case "rotate-key":
		if err := sub.Parse(rest); err != nil {
			return err
		}
		if sub.NArg() != 1 {
			return errors.New("rotate-key NODE: name one node")
		}
		return c.rotateKey(ctx, sub.Arg(0), out)
	case "sysdump":
		file := sub.String("o", "", "the tarball to write (default: weft-sysdump-<time>.tar.gz)")
		if err := sub.Parse(rest); err != nil {
			return err
		}
		if *file == "" {
			*file = "weft-sysdump-" + time.Now().UTC().Format("20060102-150405") + ".tar.gz"
		}
		return c.sysdump(ctx, *file, out)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// interleave moves flags before the positional arguments, so that
// `showconf node a --node b` parses as users write it.
func interleave(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		if len(args[i]) > 1 && args[i][0] == '-' {
			flags = append(flags, args[i])
			if i+1 < len(args) && !strings.Contains(args[i], "=") {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, args[i])
	}
	return append(flags, pos...)
}
