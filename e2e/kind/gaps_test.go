//go:build kind

package kind

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gapCapture times, to the microsecond, each data segment of some TCP
// streams as it arrives at a node's weft0: the tunnel's side of the node,
// where every packet from another node's pod comes out of wireguard-go in
// the clear. iperf3's intervals (100 ms) can only say that a pause was at
// least one interval; issue 30 bounds a pause at 100 ms. tcpdump runs on
// the host in the kind node's network namespace (nsenter); the TUN is the
// one a handover passes on, so the capture spans it.
type gapCapture struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when tcpdump has ended
	mu   sync.Mutex
	out  strings.Builder
	errs strings.Builder
}

// captureGaps starts timing the data segments that pass iface (weft0, or
// a pod's veth) in node from the given source ports (greater than 100
// bytes: data, not ACKs).
func captureGaps(t *testing.T, node, iface string, ports ...int) *gapCapture {
	t.Helper()
	pid := nodePid(t, node)
	var filter []string
	for _, p := range ports {
		filter = append(filter, fmt.Sprintf("src port %d", p))
	}
	c := &gapCapture{}
	c.cmd = exec.Command("nsenter", "-t", pid, "-n", "tcpdump", "-i", iface, "-n", "-tt", "-q", "-l", "-s", "128", "-B", "8192",
		"tcp and greater 100 and ("+strings.Join(filter, " or ")+")")
	c.cmd.Stdout = lockedWriter{&c.mu, &c.out}
	c.cmd.Stderr = lockedWriter{&c.mu, &c.errs}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("tcpdump on %s in %s: %v", iface, node, err)
	}
	c.done = make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	// tcpdump says when it listens; wait for that, so no segment is missed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		listening := strings.Contains(c.errs.String(), "listening on")
		c.mu.Unlock()
		if listening {
			return c
		}
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			<-c.done
			t.Fatalf("tcpdump on %s in %s does not listen: %s", iface, node, c.errs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamGap is the longest time between two data segments of one stream,
// and when it ended; and every gap of at least reportGap, to set beside
// what happened then (a handover's log lines, a pod's start).
type streamGap struct {
	Longest  time.Duration
	Ended    time.Time
	Segments int
	Long     []gapAt
}

// gapAt is one gap: when it began and how long it was.
type gapAt struct {
	From time.Time
	Took time.Duration
}

const reportGap = 50 * time.Millisecond

// stop ends the capture and returns each port's longest gap. A capture
// that ended early (tcpdump failed, weft0 went away) is an error: its
// gaps would be short by what it missed.
func (c *gapCapture) stop() (map[int]streamGap, error) {
	early := false
	select {
	case <-c.done:
		early = true
	default:
		_ = c.cmd.Process.Signal(os.Interrupt)
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if early {
		return nil, fmt.Errorf("tcpdump ended before the traffic did: %s", c.errs.String())
	}
	// A segment the capture lost would read as a gap.
	if m := droppedRE.FindStringSubmatch(c.errs.String()); m == nil || m[1] != "0" {
		return nil, fmt.Errorf("tcpdump did not capture every segment: %s", c.errs.String())
	}
	return parseGaps(c.out.String())
}

var droppedRE = regexp.MustCompile(`(\d+) packets? dropped by kernel`)

// parseGaps reads tcpdump -tt -q lines ("1733570000.123456 IP
// 10.244.2.5.5201 > 10.244.1.7.40000: tcp 1448", IPv6 alike) into each
// source port's longest gap. Each port's gaps are those of its busiest
// connection: iperf3's data stream, not its control connection, whose
// few messages (the results, after the stream) are no part of it.
func parseGaps(out string) (map[int]streamGap, error) {
	type conn struct {
		port int
		to   string
	}
	byConn := map[conn]streamGap{}
	last := map[conn]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue // tcpdump's own lines
		}
		secs, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("tcpdump line %q: %v", sc.Text(), err)
		}
		at := time.UnixMicro(int64(math.Round(secs * 1e6)))
		i := strings.LastIndexByte(f[2], '.')
		port, err := strconv.Atoi(f[2][i+1:])
		if i < 0 || err != nil {
			return nil, fmt.Errorf("tcpdump line %q: no source port", sc.Text())
		}
		c := conn{port, f[4]}
		g := byConn[c]
		if prev, ok := last[c]; ok {
			d := at.Sub(prev)
			if d > g.Longest {
				g.Longest, g.Ended = d, at
			}
			if d >= reportGap {
				g.Long = append(g.Long, gapAt{prev, d})
			}
		}
		g.Segments++
		byConn[c], last[c] = g, at
	}
	gaps := map[int]streamGap{}
	for c, g := range byConn {
		if g.Segments > gaps[c.port].Segments {
			gaps[c.port] = g
		}
	}
	return gaps, sc.Err()
}

// TestParseGaps reads tcpdump's lines as captureGaps gets them: each
// port's longest gap and the gaps of reportGap or more, IPv4 and IPv6,
// of its data connection (the results on iperf3's control connection,
// 420 ms after, are not a gap).
func TestParseGaps(t *testing.T) {
	out := `1796643402.000000 IP 10.244.2.5.5201 > 10.244.1.7.48658: tcp 1448
1796643402.001000 IP6 fd00:10:244:2::5.5203 > fd00:10:244:1::7.40000: tcp 1448
1796643402.010000 IP 10.244.2.5.5201 > 10.244.1.7.48658: tcp 1448
1796643402.270000 IP 10.244.2.5.5201 > 10.244.1.7.48658: tcp 1448
1796643402.271000 IP6 fd00:10:244:2::5.5203 > fd00:10:244:1::7.40000: tcp 1448
1796643402.280000 IP 10.244.2.5.5201 > 10.244.1.7.48658: tcp 1448
1796643402.700000 IP 10.244.2.5.5201 > 10.244.1.7.48650: tcp 420
`
	gaps, err := parseGaps(out)
	if err != nil {
		t.Fatal(err)
	}
	if g := gaps[5201]; g.Segments != 4 || g.Longest != 260*time.Millisecond || len(g.Long) != 1 || g.Long[0].Took != 260*time.Millisecond {
		t.Errorf("port 5201: %+v, want 4 segments, longest and only long gap 260 ms", g)
	}
	if g := gaps[5203]; g.Segments != 2 || g.Longest != 270*time.Millisecond {
		t.Errorf("port 5203: %+v, want 2 segments, longest gap 270 ms", g)
	}
	if _, err := parseGaps("garbage line here, five fields\n"); err == nil {
		t.Error("a line that is not tcpdump's was read")
	}
}

// hostVeth is the node's side of a pod's veth: the device the node routes
// the pod's address through (IPv4 when it has one).
func hostVeth(t *testing.T, node, podName string) string {
	t.Helper()
	a, v6 := addrs(t, podName)
	if !a.IsValid() {
		a = v6
	}
	pid := nodePid(t, node)
	out := must(t, "nsenter", "-t", pid, "-n", "ip", "-o", "route", "get", a.String())
	f := strings.Fields(out)
	if i := slices.Index(f, "dev"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	t.Fatalf("%s: no device in the route to %s (%s): %s", node, podName, a, out)
	return ""
}

// TestOwnPause: a gap of the tunnel's stream that a control stalled
// through at the same moment is the machine's; the longest of the others
// is weft's (run 2 of stop 53's helm upgrade: 125 ms shared with the
// control's 128 ms, 94 ms not).
func TestOwnPause(t *testing.T) {
	at := func(ms int) time.Time { return time.UnixMilli(1_700_000_000_000 + int64(ms)) }
	r := trafficReport{
		Gap:      streamGap{Longest: 125 * time.Millisecond, Long: []gapAt{{at(0), 125 * time.Millisecond}, {at(2800), 94 * time.Millisecond}}},
		Controls: []streamGap{{Long: []gapAt{{at(-7), 128 * time.Millisecond}}}, {}},
	}
	if got := r.ownPause(); got != 94 {
		t.Fatalf("own pause %v ms, want 94", got)
	}
	r.Controls = nil
	if got := r.ownPause(); got != 125 {
		t.Fatalf("own pause without controls %v ms, want 125", got)
	}
	r.Gap = streamGap{Longest: 30 * time.Millisecond}
	if got := r.ownPause(); got != 30 {
		t.Fatalf("own pause of a stream without long gaps %v ms, want 30", got)
	}
}

// nodePid is the pid of a kind node's container: nsenter's way into its
// network namespace.
func nodePid(t *testing.T, node string) string {
	t.Helper()
	return strings.TrimSpace(must(t, "docker", "inspect", "-f", "{{.State.Pid}}", node))
}
