package labtest

import (
	"bufio"
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// Pinger pings a pod from another every 10 ms for as long as the test
// runs, and keeps the replies: which sequence numbers came back and the
// longest time between two replies.
type Pinger struct {
	mu       sync.Mutex
	got      map[int]bool
	first    int // the first sequence number of the current window
	last     time.Time
	gap      time.Duration
	maxSeq   int
	interval time.Duration
}

// StartPinger runs ping -i 0.01 in from's namespace towards dst.
func StartPinger(t *testing.T, from *netlab.Pod, dst netip.Addr) *Pinger {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := from.Command(ctx, "ping", "-n", "-i", "0.01", "-W", "1", dst.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Pinger{got: map[int]bool{}, last: time.Now(), interval: 10 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			_, rest, ok := strings.Cut(sc.Text(), "icmp_seq=")
			if !ok {
				continue
			}
			seq, err := strconv.Atoi(strings.Fields(rest)[0])
			if err != nil {
				continue
			}
			now := time.Now()
			p.mu.Lock()
			p.got[seq] = true
			if d := now.Sub(p.last); d > p.gap {
				p.gap = d
			}
			p.last = now
			p.maxSeq = max(p.maxSeq, seq)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); _ = cmd.Wait(); <-done })
	return p
}

// Across runs fn, waits until the pings have flowed for another second,
// and returns the longest time between two replies and how many pings of
// that window got no reply.
func (p *Pinger) Across(t *testing.T, what string, fn func()) (gap time.Duration, lost int) {
	t.Helper()
	p.mu.Lock()
	p.gap, p.last, p.first = 0, time.Now(), p.maxSeq+1
	p.mu.Unlock()
	fn()
	p.mu.Lock()
	after := p.maxSeq
	p.mu.Unlock()
	Eventually(t, 30*time.Second, "pings are answered again after "+what, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.maxSeq > after+100
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for seq := p.first; seq <= p.maxSeq; seq++ {
		if !p.got[seq] {
			lost++
		}
	}
	return p.gap, lost
}

// TCPRetrans is the TCP segments pod has retransmitted (RetransSegs in its
// namespace's /proc/net/snmp): every one is a packet lost on the way, or
// one the sender gave up waiting for.
func TCPRetrans(t *testing.T, pod *netlab.Pod) int64 {
	t.Helper()
	return SNMP(t, pod.Command(context.Background(), "cat", "/proc/net/snmp"), "Tcp", "RetransSegs")
}

// UDPNoPorts is the UDP datagrams that arrived at node for a port nothing
// was bound to (NoPorts in its namespace's /proc/net/snmp): at a handover,
// what arrived between the old agent's socket closing and the new one's bind.
func UDPNoPorts(t *testing.T, n *netlab.Node) int64 {
	t.Helper()
	return SNMP(t, exec.Command("ip", "netns", "exec", n.NS, "cat", "/proc/net/snmp"), "Udp", "NoPorts")
}

// SNMP runs cmd (a cat of /proc/net/snmp in some namespace) and returns
// one counter of it.
func SNMP(t *testing.T, cmd *exec.Cmd, proto, field string) int64 {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read %s: %v", cmd, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != proto+":" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, n := range names {
			if n == field && i+1 < len(f) {
				v, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					t.Fatalf("%s %s %q: %v", proto, field, f[i+1], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no %s %s in %s", proto, field, cmd)
	return 0
}
