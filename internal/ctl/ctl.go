// Package ctl is weftctl: the commands that talk to a running weft-agent
// over its HTTP API (and its control socket). kubectl weft runs the same
// commands against an agent it reaches through the API server.
package ctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/api"
)

const usage = `usage: weftctl [--agent URL] COMMAND [flags]

  status  [-o table|wide|json|yaml]   this node and each peer: location, path
                                      (direct, encrypted, external), endpoint,
                                      last handshake, bytes, MTU
  peers   [-o table|json]             the agent's peers (older, terser form)
  graph   [-o dot|svg]                the mesh as Graphviz DOT, or as SVG
                                      (locations are clusters)
  showconf node NAME | peer NAME [--service-cidr CIDR]
                                      a wg-quick configuration: a node's, or
                                      one for an external Peer object
  rotate-key [--state-dir DIR]        give this node a new WireGuard key (as
                                      root on the node: the agent takes it
                                      only on DIR/control.sock, at most once
                                      per 30 s); prints the public key
`

// Run runs weftctl with args, printing to out; flag.ErrHelp when the usage
// was asked for (and printed).
func Run(args []string, out io.Writer) error {
	return run(args, out)
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
	base := strings.TrimRight(*agentURL, "/")
	sub := flag.NewFlagSet(fs.Arg(0), flag.ContinueOnError)
	switch cmd := fs.Arg(0); cmd {
	case "peers":
		output := sub.String("o", "table", "output format: table or json")
		if err := sub.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		return peers(base, *output, out)
	case "status":
		output := sub.String("o", "table", "output format: table, wide, json or yaml")
		if err := sub.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		return status(base, *output, out)
	case "graph":
		output := sub.String("o", "dot", "output format: dot or svg")
		if err := sub.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		return graph(base, *output, out)
	case "showconf":
		return showconf(base, fs.Args()[1:], out)
	case "rotate-key":
		stateDir := sub.String("state-dir", "/var/lib/weft", "the agent's --state-dir, which holds its control socket")
		if err := sub.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		return rotateKey(filepath.Join(*stateDir, api.ControlSocket), out)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// Fetch GETs url from an agent: its body (at most limit bytes), or an
// error with the agent's own answer. kubectl weft reads through it too.
func Fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// get reads one JSON document from the agent.
func get(url string, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := Fetch(ctx, url, 16<<20)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", url, err)
		}
	}
	return body, nil
}

func peers(base, format string, out io.Writer) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("-o %q: want table or json", format)
	}
	var ps []api.PeerStatus
	body, err := get(base+"/v1/peers", &ps)
	if err != nil {
		return err
	}
	if format == "json" {
		_, err := out.Write(body)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tPOD CIDRS\tLATEST HANDSHAKE\tSOURCE\tPUBLIC KEY")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Endpoint, strings.Join(p.PodCIDRs, ","), ago(p.LatestHandshake), p.Source, p.PublicKey)
	}
	return tw.Flush()
}

func ago(rfc3339 string) string {
	if t, err := time.Parse(time.RFC3339, rfc3339); err == nil {
		return time.Since(t).Round(time.Second).String() + " ago"
	}
	return "never"
}

func status(base, format string, out io.Writer) error {
	var st api.Status
	body, err := get(base+"/v1/status", &st)
	if err != nil {
		return err
	}
	switch format {
	case "json":
		_, err := out.Write(body)
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(body)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	case "table", "wide":
	default:
		return fmt.Errorf("-o %q: want table, wide, json or yaml", format)
	}
	n := st.Node
	loc := n.Location
	if loc == "" {
		loc = "(none)"
	}
	ready := "not ready"
	if n.Ready {
		ready = "ready"
	}
	strict := ""
	if n.StrictEncryption {
		strict = ", strict encryption"
	}
	fmt.Fprintf(out, "node %s: %s, endpoint %s, location %s, intra-location %s%s, MTU %d\n  public key %s (%s old)\n  post-quantum keys: %s, rotated every %s\n  pod CIDRs %s\n\n",
		n.Name, ready, n.Endpoint, loc, n.IntraLocation, strict, n.MTU, n.PublicKey, time.Duration(n.KeyAgeSeconds)*time.Second,
		n.PQ, time.Duration(n.PSKRotationSeconds)*time.Second, strings.Join(n.PodCIDRs, ","))
	if t := n.Traffic; t != nil {
		fmt.Fprintf(out, "traffic from pods: %s (tunnel), %s (direct), %s in the clear%s\ndropped: %s (strict encryption), %s (network policy)\n\n",
			countText(t.Tunnel), countText(t.Direct), countText(t.Plaintext), plainWarning(t.Plaintext),
			countText(t.StrictDrops), countText(t.PolicyDrops))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	head := "PEER\tLOCATION\tPATH\tENDPOINT\tHANDSHAKE\tRX\tTX\tMTU\tPSK"
	if format == "wide" {
		head += "\tANNOUNCED\tPOD CIDRS\tSOURCE\tPUBLIC KEY"
	}
	fmt.Fprintln(tw, head)
	for _, p := range st.Peers {
		hs, rx, tx := ago(p.LatestHandshake), bytesIEC(p.RxBytes), bytesIEC(p.TxBytes)
		if p.Path == "direct" {
			hs, rx, tx = "-", "-", "-"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", p.Name, dash(p.Location), p.Path, p.Endpoint, hs, rx, tx, p.MTU, pskColumn(p))
		if format == "wide" {
			line += fmt.Sprintf("\t%s\t%s\t%s\t%s", p.AnnouncedEndpoint, strings.Join(p.PodCIDRs, ","), p.Source, p.PublicKey)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func countText(c api.Count) string {
	return fmt.Sprintf("%d packets / %s", c.Packets, bytesIEC(int64(min(c.Bytes, 1<<62))))
}

// plainWarning flags pod traffic that left in the clear.
func plainWarning(c api.Count) string {
	if c.Packets > 0 {
		return " (!: pod traffic left for another node's pods outside the tunnel)"
	}
	return ""
}

// pskColumn says whether the pair has a post-quantum key, and its age.
func pskColumn(p api.PeerStatus) string {
	switch {
	case p.Path == "direct" || p.Path == "external":
		return "-"
	case p.PresharedKey:
		return "pq " + (time.Duration(p.PresharedKeyAgeSeconds) * time.Second).String()
	case p.PresharedKeyError != "":
		return "none (failing)"
	default:
		return "none"
	}
}

// rotateKey asks the agent for a new node key on its control socket.
func rotateKey(socket string, out io.Writer) error {
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	resp, err := c.Post("http://agent"+api.RotateKeyPath, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(out, "new public key %s", body)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
