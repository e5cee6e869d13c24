package labtest

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// RssMiB is a process's resident memory.
func RssMiB(t testing.TB, pid int) float64 { t.Helper(); return StatusMiB(t, pid, "VmRSS") }

// StatusMiB is one of the memory fields of a process's /proc/PID/status
// (VmRSS, RssAnon, RssFile, VmHWM).
func StatusMiB(t testing.TB, pid int, field string) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no %s for pid %d", field, pid)
	return 0
}

// WaitMeshOf waits until each of nodes lists every other as a peer.
func (c *Cluster) WaitMeshOf(nodes []*netlab.Node, timeout time.Duration) {
	c.T.Helper()
	Eventually(c.T, timeout, "mesh of "+fmt.Sprint(len(nodes))+" nodes", func() bool {
		for _, n := range nodes {
			names, err := n.PeerNames(context.Background(), c.Bins)
			if err != nil || len(names) < len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// IpIn runs ip(8) in a pod's namespace.
func IpIn(netns string, args ...string) error {
	return osexec.Command("ip", append([]string{"-n", netns}, args...)...).Run()
}
