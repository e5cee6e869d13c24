// Command weftctl talks to a running weft-agent over its HTTP API.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/api"
)

const usage = `usage: weftctl [--agent URL] peers [-o table|json]

  peers   list the agent's WireGuard peers
`

func main() {
	err := run(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return // the usage is printed
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weftctl: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("weftctl", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage+"\nflags:\n"); fs.PrintDefaults() }
	agentURL := fs.String("agent", "http://127.0.0.1:9587", "the agent's HTTP address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no command")
	}
	switch cmd := fs.Arg(0); cmd {
	case "peers":
		pf := flag.NewFlagSet("peers", flag.ContinueOnError)
		output := pf.String("o", "table", "output format: table or json")
		if err := pf.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		return peers(strings.TrimRight(*agentURL, "/"), *output, out)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func peers(base, format string, out io.Writer) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("-o %q: want table or json", format)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/v1/peers")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if format == "json" {
		_, err := out.Write(body)
		return err
	}
	var ps []api.PeerStatus
	if err := json.Unmarshal(body, &ps); err != nil {
		return fmt.Errorf("decode peers: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tPOD CIDRS\tLATEST HANDSHAKE\tSOURCE\tPUBLIC KEY")
	for _, p := range ps {
		hs := "never"
		if t, err := time.Parse(time.RFC3339, p.LatestHandshake); err == nil {
			hs = time.Since(t).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Endpoint, strings.Join(p.PodCIDRs, ","), hs, p.Source, p.PublicKey)
	}
	return tw.Flush()
}
