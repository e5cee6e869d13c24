package datapath

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// handoverBudget is the bound on traffic's pause over a handover.
const handoverBudget = 50 * time.Millisecond

// handoverLab is two nodes with a pod each, a TCP stream and a 10 ms ping
// between the pods.
type handoverLab struct {
	c      *labtest.Cluster
	n1, n2 *netlab.Node
	client *netlab.Pod // the stream's sender, on n1
	stream *labtest.Stream
	ping   *labtest.Pinger
	// What a handover may pause each (handoverBudget, plus the machine's
	// own jitter when TestHandoverIsHitless measured it).
	streamBudget, pingBudget time.Duration
}

func newHandoverLab(t *testing.T, extra ...string) *handoverLab {
	c := labtest.NewPodClusterWith(t, 2, extra...)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	client, server := c.AddPod(n1, "client"), c.AddPod(n2, "server")
	// ~4 MB/s: a pause is measured to the millisecond, and the stream
	// leaves the two cores room for the agents that start beside it.
	h := &handoverLab{c: c, n1: n1, n2: n2, client: client, stream: labtest.StartStreamEvery(t, client, server, 4*time.Millisecond),
		streamBudget: handoverBudget, pingBudget: handoverBudget}
	h.ping = labtest.StartPinger(t, client, server.Addr(false))
	labtest.Eventually(t, 10*time.Second, "the stream carries data", func() bool { return h.stream.Bytes.Load() > 4<<20 })
	return h
}

// replace starts a second agent on n beside the running one and waits
// until it has taken over; it returns the old and the new process.
func (h *handoverLab) replace(t *testing.T, n *netlab.Node, extra ...string) (old, next *netlab.Proc) {
	t.Helper()
	old = h.c.Agents[n.Name]
	next = h.c.Start(n, extra...)
	labtest.Eventually(t, 30*time.Second, "the new agent takes over on "+n.Name, func() bool {
		return strings.Contains(next.Output(), "took the data plane over")
	})
	h.c.WaitReady(n, 20*time.Second)
	return old, next
}

// TestHandoverIsHitless: a new agent beside the running one takes the data
// plane over — the sending node's, then the receiving node's — while a TCP
// stream and a 10 ms ping run between pods on the two nodes. The longest
// pause of each must be at most 50 ms beyond this machine's own, no ping
// may be lost beyond that pause, the stream's connection must survive, and
// the old agent, stopped afterwards, must leave the data plane to the new
// one. The budget is the
// handover's own: the machine's jitter, measured on the same stream and
// ping with nothing happening just before, is added to it (idle, 5-15 ms;
// beside the rest of make test on 2 cores, 40 ms and more). One handover
// may still meet a scheduling stall of its own: each node is handed over
// up to three times (the jitter measured again before each retry), every
// figure is printed, and one of them must be within the budget. A real
// cost (a lost session, a retransmission timeout) is over it every time.
func TestHandoverIsHitless(t *testing.T) {
	newHandoverLab(t).hitless(t)
}

// TestHandoverDuringKeyRotation: TestHandoverIsHitless with the pairs
// agreeing a new preshared key every second (--psk-rotation 1s), so that
// an exchange runs during every handover. The old agent holds its keys
// from the offer to the take (keys.Manager.Hold): the successor's
// sessions, made under the keys it was offered, must all be there at
// take. Without the hold, a key agreed in between leaves the successor
// shaking hands under one the peer no longer holds, and the pair silent
// until WireGuard's 5 s retry.
func TestHandoverDuringKeyRotation(t *testing.T) {
	newHandoverLab(t, "--psk-rotation", "1s").hitless(t)
}

// hitless hands each node's agent over under the stream and the ping
// (TestHandoverIsHitless).
func (h *handoverLab) hitless(t *testing.T) {
	h.measureJitter(t)
	for _, st := range []struct {
		what string
		n    *netlab.Node
	}{
		{"handover of the sending node's agent", h.n1},
		{"handover of the receiving node's agent", h.n2},
	} {
		var problems []string
		for attempt := 1; attempt <= handoverAttempts; attempt++ {
			if attempt > 1 {
				h.measureJitter(t) // the stall may be the machine's: look again
			}
			problems = h.handOver(t, fmt.Sprintf("%s (%d of %d)", st.what, attempt, handoverAttempts), st.n)
			if len(problems) == 0 {
				break
			}
		}
		for _, p := range problems {
			t.Error(p)
		}
	}
	// Both nodes' agents are new ones; the mesh is whole.
	h.c.WaitMesh(10 * time.Second)
}

// handoverAttempts is how often a node is handed over before a miss of the
// budget fails the test: beside the rest of make test (builds at nice 19
// on 2 cores) a scheduling stall of 50-100 ms is not rare, while a real
// cost (a lost session: WireGuard's 5 s retry; a retransmission timeout:
// 200 ms and more) is over the budget every time.
const handoverAttempts = 3

// measureJitter measures the stream's longest pause and the ping's longest
// gap over a second with nothing happening, and raises the budgets to the
// handover's own plus that (never lowers them: the worst the machine has
// shown in this test).
func (h *handoverLab) measureJitter(t *testing.T) {
	t.Helper()
	var pingBase time.Duration
	streamBase := h.stream.Across(t, "nothing", func() {
		pingBase, _ = h.ping.Across(t, "nothing", func() { time.Sleep(time.Second) })
	})
	t.Logf("nothing happening: the stream's longest pause %v, the ping's longest gap %v",
		streamBase.Round(time.Millisecond), pingBase.Round(time.Millisecond))
	h.streamBudget = max(h.streamBudget, handoverBudget+streamBase)
	h.pingBudget = max(h.pingBudget, handoverBudget+max(pingBase-10*time.Millisecond, 0))
}

// handOver replaces n's agent under the stream and the ping, checks what
// must always hold (failing the test), and returns the budget's misses.
func (h *handoverLab) handOver(t *testing.T, what string, n *netlab.Node) (over []string) {
	t.Helper()
	var old, next *netlab.Proc
	var pingGap time.Duration
	var lost int
	retrans, noPorts := labtest.TCPRetrans(t, h.client), labtest.UDPNoPorts(t, n)
	gap := h.stream.Across(t, what, func() {
		pingGap, lost = h.ping.Across(t, what, func() { old, next = h.replace(t, n) })
	})
	retrans, noPorts = labtest.TCPRetrans(t, h.client)-retrans, labtest.UDPNoPorts(t, n)-noPorts
	t.Logf("%s: stream's longest pause %v (ended %s), %d segments retransmitted; ping's longest gap %v, %d of the 10 ms pings lost; %d datagrams reached the node's closed port",
		what, gap.Round(time.Millisecond), h.stream.GapAt.UTC().Format("15:04:05.000"), retrans, pingGap.Round(time.Millisecond), lost, noPorts)
	if gap > h.streamBudget {
		over = append(over, fmt.Sprintf("%s: the stream paused %v; want at most %v", what, gap, h.streamBudget))
	}
	if pingGap > h.pingBudget {
		over = append(over, fmt.Sprintf("%s: %v between two ping replies; want at most %v", what, pingGap, h.pingBudget))
	}
	if max := int(h.pingBudget / (10 * time.Millisecond)); lost > max {
		over = append(over, fmt.Sprintf("%s: %d pings lost; want at most %d (the pause)", what, lost, max))
	}
	for _, want := range []string{"offered the data plane", "handed the data plane over", "handed over; waiting to be stopped"} {
		if !strings.Contains(old.Output(), want) {
			t.Errorf("%s: the old agent's log lacks %q", what, want)
		}
	}
	// The port is never unbound: the old agent closes its socket only
	// once the successor said its own is on the port.
	labtest.Eventually(t, 5*time.Second, what+": the old agent releases the port", func() bool {
		return labtest.FirstLine(old.Output(), "released the port") != ""
	})
	if line := labtest.FirstLine(old.Output(), "released the port"); !strings.Contains(line, "told_bound=true") {
		t.Errorf("%s: the old agent let go of the port without the successor's word that it was bound: %q", what, line)
	}
	if line := labtest.FirstLine(next.Output(), "cannot tell the old agent the port is bound"); line != "" {
		t.Errorf("%s: %s", what, line)
	}
	// The old agent, stopped now, leaves gossip and the device alone.
	stopped := h.stream.Across(t, "stopping the old agent on "+n.Name, old.Stop)
	if err := old.Err(); err != nil {
		t.Errorf("the old agent exited with %v; want 0", err)
	}
	if stopped > h.streamBudget {
		over = append(over, fmt.Sprintf("stopping the old agent after the handover paused the stream %v", stopped))
	}
	// Every session was made through the old agent before the take.
	if line := labtest.FirstLine(next.Output(), "sessions made through the old agent"); !strings.Contains(line, "peers=1 of=1") {
		t.Errorf("%s: the new agent took over without its session: %q", what, line)
	}
	if strings.Contains(next.Output(), "level=ERROR") {
		t.Errorf("the new agent logged errors:\n%s", labtest.Tail(next.Output(), 20))
	}
	return over
}

// TestHandoverRefusedFallsBack: a new agent asking for a handover version
// the running one does not speak is refused; it waits for the running
// agent to exit and then starts as a plain restart. The stream survives
// (with a restart's pause).
func TestHandoverRefusedFallsBack(t *testing.T) {
	h := newHandoverLab(t)
	old := h.c.Agents[h.n1.Name]
	var next *netlab.Proc
	gap := h.stream.Across(t, "a refused handover", func() {
		next = h.c.Start(h.n1, "--handover-version", "99")
		labtest.Eventually(t, 10*time.Second, "the running agent refuses", func() bool {
			return strings.Contains(old.Output(), "refused a handover") &&
				strings.Contains(next.Output(), "cannot hand over; waiting for it to exit")
		})
		// Refused, the new agent touches nothing: the old one still runs
		// the data plane.
		time.Sleep(500 * time.Millisecond)
		if strings.Contains(next.Output(), "device up") {
			t.Fatal("a refused successor opened the device beside the running agent")
		}
		old.Stop()
		labtest.Eventually(t, 20*time.Second, "the new agent starts as a restart", func() bool {
			return strings.Contains(next.Output(), "agent started")
		})
	})
	t.Logf("refused handover, then a plain restart: the stream's longest pause %v", gap.Round(time.Millisecond))
	if strings.Contains(next.Output(), "took the data plane over") {
		t.Error("the refused successor claims a handover")
	}
	h.c.WaitReady(h.n1, 20*time.Second)
}

// TestHandoverFailures: a successor that fails before it is ready leaves
// the running agent's data plane untouched; an old agent killed in the
// middle of a handover (between offer and take) leaves its successor to
// start as after a crash; two successors racing for one agent end with one
// agent running the data plane.
func TestHandoverFailures(t *testing.T) {
	h := newHandoverLab(t)
	n := h.n1
	// The budget beyond this machine's own jitter, as in TestHandoverIsHitless.
	base := h.stream.Across(t, "nothing", func() { time.Sleep(time.Second) })
	budget := handoverBudget + base
	t.Logf("nothing happening: the stream's longest pause %v", base.Round(time.Millisecond))

	// 1. The successor fails after the offer (its gossip key file is
	// readable by others): it exits with one line, and the running agent
	// goes on without a pause.
	old := h.c.Agents[n.Name]
	openKey := filepath.Join(t.TempDir(), "open.key")
	key, err := os.ReadFile(h.c.GossipKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(openKey, key, 0o644); err != nil {
		t.Fatal(err)
	}
	went := strings.Count(old.Output(), "the successor did not take over; going on")
	h.within(t, "a successor that failed before take", budget, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args := append(h.c.AgentArgs(n), "--gossip-key-file", openKey)
		cmd := n.Command(ctx, filepath.Join(h.c.Bins, "weft-agent"), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if ctx.Err() != nil || !asExit(err, &ee) {
			t.Fatalf("the failing successor: %v; want a non-zero exit", err)
		}
		lines := labtest.NonEmpty(strings.Split(stderr.String(), "\n"))
		if last := lines[len(lines)-1]; !strings.Contains(last, "mode 0644") {
			t.Errorf("the failing successor's last line = %q", last)
		}
		labtest.Eventually(t, 5*time.Second, "the running agent notices the successor gave up", func() bool {
			return strings.Count(old.Output(), "the successor did not take over; going on") > went
		})
		went = strings.Count(old.Output(), "the successor did not take over; going on")
	})
	labtest.Eventually(t, 5*time.Second, "the running agent is still ready", func() bool { return labtest.Readyz(n) == 200 })

	// 1b. The successor dies after its sessions were made through the old
	// agent, before take: the old agent renews every session at once
	// (the peers would otherwise send under the dead successor's sessions
	// until their next rekey, minutes later).
	h.within(t, "a successor killed after its handshakes", budget, func() {
		renewed := strings.Count(old.Output(), "renewing the sessions a successor made")
		doomed := h.c.Start(n, "--handover-hold", "5s")
		labtest.Eventually(t, 10*time.Second, "the successor made its sessions", func() bool {
			return strings.Contains(doomed.Output(), "holding before take")
		})
		doomed.Kill()
		labtest.Eventually(t, 5*time.Second, "the old agent renews its sessions", func() bool {
			return strings.Count(old.Output(), "renewing the sessions a successor made") > renewed
		})
		h.c.Agents[n.Name] = old
	})

	// 2. The old agent dies between the offer and take.
	var next *netlab.Proc
	gap := h.stream.Across(t, "an old agent killed mid-handover", func() {
		next = h.c.Start(n, "--handover-hold", "2s")
		labtest.Eventually(t, 10*time.Second, "the successor holds before take", func() bool {
			return strings.Contains(next.Output(), "holding before take")
		})
		old.Kill()
		labtest.Eventually(t, 20*time.Second, "the successor starts as after a crash", func() bool {
			return strings.Contains(next.Output(), "went away during the handover") && strings.Contains(next.Output(), "agent started")
		})
	})
	t.Logf("old agent killed mid-handover: the stream's longest pause %v (a crash's)", gap.Round(time.Millisecond))
	h.c.WaitReady(n, 20*time.Second)

	// 3. Two successors race for one agent: each takes over at most once,
	// every agent that took over from another handed over in turn except
	// one, and that one runs the data plane.
	old = next
	h.within(t, "two successors racing for one agent (two handovers in a row)", 2*budget, func() {
		a, b := h.c.Start(n), h.c.Start(n)
		labtest.Eventually(t, 60*time.Second, "the race settles", func() bool {
			return owners(old, a, b) == 1 && strings.Contains(a.Output(), "agent started") && strings.Contains(b.Output(), "agent started")
		})
		for _, p := range []*netlab.Proc{a, b} {
			if c := strings.Count(p.Output(), "took the data plane over"); c != 1 {
				t.Errorf("a successor took over %d times; want once", c)
			}
		}
		h.c.WaitReady(n, 20*time.Second)
		// The ones that handed over are stopped; the owner races next.
		for _, p := range []*netlab.Proc{old, a, b} {
			if strings.Contains(p.Output(), "handed over; waiting to be stopped") {
				p.Stop()
			} else {
				old = p
			}
		}
		h.c.Agents[n.Name] = old
	})
	h.c.WaitMesh(10 * time.Second)
}

// within runs a failure case under the stream and checks the stream's
// longest pause against budget. A case that costs traffic (a lost session,
// a retransmission timeout) costs it every time; a scheduling stall of
// this machine's own (2 cores, the rest of make test beside the lab)
// rarely twice in a row: a case over budget runs once more, every figure
// is printed, and the better of the two must be within it.
func (h *handoverLab) within(t *testing.T, what string, budget time.Duration, run func()) {
	t.Helper()
	var gaps []time.Duration
	for attempt := 1; attempt <= 2; attempt++ {
		gap := h.stream.Across(t, what, run)
		t.Logf("%s (%d of 2): the stream's longest pause %v", what, attempt, gap.Round(time.Millisecond))
		if gap <= budget {
			return
		}
		gaps = append(gaps, gap)
	}
	t.Errorf("%s paused the stream %v; want at most %v", what, gaps, budget)
}

// owners counts the agents that run a data plane: started and not handed
// over.
func owners(ps ...*netlab.Proc) int {
	n := 0
	for _, p := range ps {
		out := p.Output()
		if strings.Contains(out, "agent started") && !strings.Contains(out, "handed the data plane over") {
			n++
		}
	}
	return n
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok && e.Sys().(syscall.WaitStatus).ExitStatus() != 0
}
