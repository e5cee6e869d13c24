package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestWriteScale: the report names every size and states each target as
// met or not from the largest size's figures; the plot is an SVG, also for
// a single size and a figure of 0 (a log axis has no 0).
func TestWriteScale(t *testing.T) {
	for _, sizes := range [][]ScalePoint{
		{{Nodes: 20, RSSMiB: 70, AddPeerWrites: 1, AddRouteChanges: 1, DelPeerWrites: 1, DelRouteChanges: 1}},
		{{Nodes: 100, RSSMiB: 40, IdleCPUSteady: 0.1, ChurnP99Millis: 50},
			{Nodes: 1000, RSSMiB: 60, RSSSteadyMaxMiB: 70, IdleCPUSteady: 0.7, ChurnP99Millis: 300, AddPeerWrites: 1, AddRouteChanges: 1, DelPeerWrites: 1, DelRouteChanges: 2}},
		{{Nodes: 5000, RSSMiB: 58, RSSSteadyMaxMiB: 63}},
		{{Nodes: 5000, RSSMiB: 58, RSSSteadyMaxMiB: 63, ActiveRSSMiB: 72}},
	} {
		dir := t.TempDir()
		md, err := WriteScale(&ScaleRun{Time: "2026-12-03T01:00:00Z", Machine: "test", Sizes: sizes}, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"N = " + strconv.Itoa(sizes[0].Nodes), "scale-20261203T010000Z.svg"} {
			if !strings.Contains(md, want) {
				t.Errorf("report lacks %q:\n%s", want, md)
			}
		}
		last := sizes[len(sizes)-1]
		rss := strings.Contains(md, "RSS ≤ 64 MiB, at rest and with the working set: met")
		if rss != (max(last.RSSMiB, last.RSSSteadyMaxMiB, last.ActiveRSSMiB) <= 64) {
			t.Errorf("RSS %.0f MiB (%.0f in the steady minute, %.0f with the working set) reported as met=%v", last.RSSMiB, last.RSSSteadyMaxMiB, last.ActiveRSSMiB, rss)
		}
		idle := strings.Contains(md, "idle CPU ≤ 0.5 % of a core: met")
		if idle != (last.IdleCPUSteady <= 0.5) {
			t.Errorf("idle CPU %.1f %% reported as met=%v", last.IdleCPUSteady, idle)
		}
		one := strings.Contains(md, "one peer write and one route change: met")
		if want := last.DelRouteChanges == 1 && last.AddPeerWrites == 1; one != want {
			t.Errorf("writes reported as met=%v, want %v", one, want)
		}
		svg, err := os.ReadFile(filepath.Join(dir, "scale-20261203T010000Z.svg"))
		if err != nil || !strings.Contains(string(svg), "<svg") {
			t.Fatalf("plot: %v", err)
		}
	}
}

// TestWriteScaleLive: with live peers the first-packet target compares the
// p99 of first packets with an awake peer's median round trip, and fails on
// any first packet lost; the restart target needs a figure.
func TestWriteScaleLive(t *testing.T) {
	for _, tc := range []struct {
		p          ScalePoint
		first, now bool
	}{
		{ScalePoint{Nodes: 5000, Live: true, FirstPackets: 300, FirstP99Millis: 40, ActiveP50Millis: 3, StartActiveMillis: 2000}, true, true},
		{ScalePoint{Nodes: 5000, Live: true, FirstPackets: 300, FirstP99Millis: 60, ActiveP50Millis: 3, StartActiveMillis: 12000}, false, false},
		{ScalePoint{Nodes: 5000, Live: true, FirstPackets: 300, FirstLost: 1, FirstP99Millis: 10, ActiveP50Millis: 3}, false, false},
	} {
		md, err := WriteScale(&ScaleRun{Time: "2026-12-06T01:00:00Z", Machine: "test", Sizes: []ScalePoint{tc.p}}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(md, "none lost: met"); got != tc.first {
			t.Errorf("%+v: first packet reported met=%v, want %v", tc.p, got, tc.first)
		}
		if got := strings.Contains(md, "reachable ≤ 10 s: met"); got != tc.now {
			t.Errorf("%+v: restart reported met=%v, want %v", tc.p, got, tc.now)
		}
		if !strings.Contains(md, "first packet to a resting peer: RTT p50 / p99") {
			t.Errorf("the live rows are missing:\n%s", md)
		}
	}
}

// TestWriteScaleOnDemandAdd: with on-demand peers an added Node starts
// resting, so no peer write is met; without them one is needed.
func TestWriteScaleOnDemandAdd(t *testing.T) {
	p := ScalePoint{Nodes: 5000, AddRouteChanges: 1, DelRouteChanges: 1}
	for _, onDemand := range []string{"", "20s"} {
		md := ScaleMarkdown(&ScaleRun{Time: "2026-12-03T01:00:00Z", Machine: "test", OnDemandAfter: onDemand, Sizes: []ScalePoint{p}}, "")
		if met := strings.Contains(md, "one peer write and one route change: met"); met != (onDemand != "") {
			t.Errorf("on-demand %q: an added Node with no peer write reported as met=%v", onDemand, met)
		}
	}
}
