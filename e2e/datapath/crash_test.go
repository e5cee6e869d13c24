package datapath

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/keys"
)

// TestCrashResumesUnderKeptKey: kill -9 of the receiving node's agent
// under the 10 ms ping, a new agent started at once, and the node's key
// exchange port blocked (nftables in the node) so that no new preshared
// key can be agreed. The pair must resume anyway: the new agent shakes
// hands under the key the last run kept (keys.StoreFile), so a crash
// costs the process's start and one handshake. Without the kept key its
// handshakes fail (the peer holds a preshared key it lost) until an
// exchange agrees a new one, here never. The ping's gap is split into the
// new process's start (to its "device up") and the data plane's own part.
func TestCrashResumesUnderKeptKey(t *testing.T) {
	h := newHandoverLab(t)
	n := h.n2
	labtest.Eventually(t, 15*time.Second, "the agent keeps the pair's agreed key", func() bool {
		b, err := os.ReadFile(filepath.Join(n.StateDir, keys.StoreFile))
		return err == nil && strings.Contains(string(b), `"psk"`)
	})
	block := `table inet weft-test-pq-block {
	chain in { type filter hook input priority -10; tcp dport 51821 drop; tcp sport 51821 drop; }
	chain out { type filter hook output priority -10; tcp dport 51821 drop; tcp sport 51821 drop; }
}`
	ctx := context.Background()
	if out, err := n.Run(ctx, "sh", "-c", "echo '"+block+"' | nft -f -"); err != nil {
		t.Fatalf("block the key exchange port: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = n.Run(ctx, "nft", "delete", "table", "inet", "weft-test-pq-block") })
	var killed, up time.Time
	gap, lost := h.ping.Across(t, "kill -9", func() {
		killed = time.Now()
		h.c.Agents[n.Name].Kill()
		next := h.c.Start(n)
		labtest.Eventually(t, 20*time.Second, "the new agent's device is up", func() bool {
			return strings.Contains(next.Output(), "device up")
		})
		up = logTime(t, labtest.FirstLine(next.Output(), "device up"))
		// The keys are restored after the device is up (the key manager
		// needs it), a moment later under load: wait for the agent to say
		// which it did.
		const restored, ignored = "restored the pair keys the last run kept", "ignoring the kept pair keys"
		labtest.Eventually(t, 10*time.Second, "the new agent says what it did with the kept keys", func() bool {
			out := next.Output()
			return strings.Contains(out, restored) || strings.Contains(out, ignored) || strings.Contains(out, "agent started")
		})
		if !strings.Contains(next.Output(), restored) {
			t.Errorf("the restarted agent did not restore the kept pair keys:\n%s", labtest.Tail(next.Output(), 20))
		}
	})
	start := up.Sub(killed)
	t.Logf("kill -9 with no key exchange possible: the ping's gap %v (%d lost); the new agent's device was up %v after the kill, so %v is the data plane's own",
		gap.Round(time.Millisecond), lost, start.Round(time.Millisecond), (gap - start).Round(time.Millisecond))
}

// logTime is the time of one of the agent's log lines.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	f := strings.Fields(line)
	if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
		t.Fatalf("no time in log line %q", line)
	}
	ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
