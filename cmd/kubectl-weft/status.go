package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/api"
)

// staleAfter is when a session counts as lost: WireGuard renews a live one
// every 2 minutes (the alert WeftPeerHandshakeStale uses the same 3).
const staleAfter = 3 * time.Minute

// peer states, in the order problems are shown.
const (
	stateFailing = "failing" // had a session and lost it, or its key exchange fails
	stateResting = "resting" // no session yet: new, or not answering (weft rests it)
	stateUp      = "up"      // a session within 3 minutes, or a direct path
)

func peerState(p api.PeerStatus, now time.Time) string {
	if p.Path == "direct" {
		return stateUp
	}
	hs, err := time.Parse(time.RFC3339, p.LatestHandshake)
	switch {
	case err == nil && now.Sub(hs) <= staleAfter:
		return stateUp
	case err == nil || p.PresharedKeyError != "":
		return stateFailing
	default:
		return stateResting
	}
}

// report is one node's answer.
type report struct {
	Node   string      `json:"node"`
	Pod    string      `json:"pod"`
	Status *api.Status `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"`
}

func (c *cluster) status(ctx context.Context, matrix bool, output string, out io.Writer) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("-o %q: want table or json", output)
	}
	var mu sync.Mutex
	got := map[string]*api.Status{}
	as, errs, err := c.eachAgent(ctx, "the status", func(ctx context.Context, a agent, base string) error {
		var st api.Status
		if err := getJSON(ctx, base, "/v1/status", &st); err != nil {
			return err
		}
		mu.Lock()
		got[a.node] = &st
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	reports := make([]report, len(as))
	for i, a := range as {
		reports[i] = report{Node: a.node, Pod: a.pod.Name, Status: got[a.node]}
		if e := errs[a.node]; e != nil {
			reports[i].Error = e.Error()
		}
	}
	now := time.Now()
	switch {
	case output == "json":
		b, err := json.MarshalIndent(reports, "", "  ")
		if err != nil {
			return err
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			return err
		}
	case matrix:
		if err := printMatrix(out, reports, now); err != nil {
			return err
		}
	default:
		if err := printNodes(out, reports, now); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d agents did not answer", len(errs), len(as))
	}
	return nil
}

func printNodes(out io.Writer, reports []report, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERSION\tREADY\tPEERS UP/RESTING/FAILING\tPSK\tSTRICT\tKEY AGE\tTUNNEL\tPLAINTEXT\tDROPPED STRICT/POLICY")
	for _, r := range reports {
		if r.Status == nil {
			fmt.Fprintf(tw, "%s\t-\tno answer\t-\t-\t-\t-\t-\t-\t-\t(%s)\n", r.Node, r.Error)
			continue
		}
		n := r.Status.Node
		count := map[string]int{}
		for _, p := range r.Status.Peers {
			count[peerState(p, now)]++
		}
		ready := "no"
		if n.Ready {
			ready = "yes"
		}
		strict := "no"
		if n.StrictEncryption {
			strict = "yes"
		}
		tunnel, plain, drops := "-", "-", "-"
		if t := n.Traffic; t != nil {
			tunnel, plain = fmt.Sprint(t.Tunnel.Packets), fmt.Sprint(t.Plaintext.Packets)
			if t.Plaintext.Packets > 0 {
				plain += " (!)"
			}
			drops = fmt.Sprintf("%d/%d", t.StrictDrops.Packets, t.PolicyDrops.Packets)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Version, ready,
			count[stateUp], count[stateResting], count[stateFailing], n.PQ, strict, age(n.KeyAgeSeconds), tunnel, plain, drops)
	}
	return tw.Flush()
}

// cell is one node's view of one peer.
type cell struct {
	node     string
	p        api.PeerStatus
	state    string
	problems []string
}

func printMatrix(out io.Writer, reports []report, now time.Time) error {
	var cells []cell
	var silent []string
	for _, r := range reports {
		if r.Status == nil {
			silent = append(silent, fmt.Sprintf("%s: no answer (%s)", r.Node, r.Error))
			continue
		}
		n := r.Status.Node
		for _, p := range r.Status.Peers {
			c := cell{node: n.Name, p: p, state: peerState(p, now)}
			if c.state != stateUp {
				c.problems = append(c.problems, c.state)
			}
			if p.Path == "encrypted" && n.PQ != "off" && !p.PresharedKey {
				c.problems = append(c.problems, "no preshared key")
			}
			if p.PresharedKeyError != "" {
				c.problems = append(c.problems, "key exchange: "+p.PresharedKeyError)
			}
			if p.Path == "encrypted" && p.MTU < n.MTU {
				c.problems = append(c.problems, fmt.Sprintf("path MTU lowered to %d", p.MTU))
			}
			cells = append(cells, c)
		}
	}
	rank := map[string]int{stateFailing: 0, stateResting: 1, stateUp: 2}
	slices.SortStableFunc(cells, func(a, b cell) int {
		if d := rank[a.state] - rank[b.state]; d != 0 {
			return d
		}
		if d := len(b.problems) - len(a.problems); d != 0 {
			return d
		}
		return strings.Compare(a.node+" "+a.p.Name, b.node+" "+b.p.Name)
	})
	for _, s := range silent {
		fmt.Fprintln(out, s)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPEER\tSTATE\tPATH\tHANDSHAKE\tPSK\tMTU\tPROBLEMS")
	for _, c := range cells {
		hs := "-"
		if t, err := time.Parse(time.RFC3339, c.p.LatestHandshake); err == nil {
			hs = now.Sub(t).Round(time.Second).String() + " ago"
		} else if c.p.Path != "direct" {
			hs = "never"
		}
		psk := "-"
		switch {
		case c.p.Path != "encrypted":
		case c.p.PresharedKey:
			psk = "pq " + age(c.p.PresharedKeyAgeSeconds)
		default:
			psk = "none"
		}
		problems := strings.Join(c.problems, "; ")
		if problems == "" {
			problems = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.node, c.p.Name, c.state, c.p.Path, hs, psk, c.p.MTU, problems)
	}
	return tw.Flush()
}

func age(seconds int64) string {
	return (time.Duration(seconds) * time.Second).String()
}
