package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/api"
)

// TestMatrixShowsProblemsFirst: a lost session, then a peer that never
// answered, then the healthy ones, whatever the order the agents answered
// in; each problem named.
func TestMatrixShowsProblemsFirst(t *testing.T) {
	now := time.Now()
	hs := func(ago time.Duration) string { return now.Add(-ago).UTC().Format(time.RFC3339) }
	node := func(name string, peers ...api.PeerStatus) report {
		return report{Node: name, Status: &api.Status{Node: api.NodeStatus{Name: name, PQ: "preferred", MTU: 1420}, Peers: peers}}
	}
	reports := []report{
		node("a", api.PeerStatus{Name: "b", Path: "encrypted", LatestHandshake: hs(time.Minute), PresharedKey: true, MTU: 1420},
			api.PeerStatus{Name: "c", Path: "encrypted", LatestHandshake: hs(10 * time.Minute), PresharedKey: true, MTU: 1420}),
		node("b", api.PeerStatus{Name: "a", Path: "encrypted", LatestHandshake: hs(time.Minute), MTU: 1380},
			api.PeerStatus{Name: "c", Path: "encrypted", MTU: 1420}),
		{Node: "c", Error: "port-forward: timeout"},
	}
	var out bytes.Buffer
	if err := printMatrix(&out, reports, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "c: no answer") {
		t.Errorf("first line %q, want the silent node", lines[0])
	}
	var order []string
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		order = append(order, f[0]+">"+f[1]+":"+f[2])
	}
	want := []string{"a>c:failing", "b>c:resting", "b>a:up", "a>b:up"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("rows %v, want %v\n%s", order, want, out.String())
	}
	if !strings.Contains(out.String(), "no preshared key; path MTU lowered to 1380") {
		t.Errorf("b>a's problems are not named:\n%s", out.String())
	}
}
