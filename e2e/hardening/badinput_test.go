package hardening

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestBadInputFailsCleanly runs weft-agent with bad flags, key files and busy
// ports on a node that already runs a working agent: each attempt exits
// non-zero with one line naming the problem, leaves no second tunnel device
// or socket behind, and the working agent's mesh is untouched.
func TestBadInputFailsCleanly(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1 := c.Lab.Nodes()[0]
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	goodKey, _ := os.ReadFile(c.GossipKey)
	shortKey := write("short.key", "c2hvcnQ=\n", 0o600)
	openKey := write("open.key", string(goodKey), 0o644)
	badPriv := filepath.Join(dir, "badstate")
	os.MkdirAll(badPriv, 0o700)
	os.WriteFile(filepath.Join(badPriv, "private.key"), []byte("not a key\n"), 0o600)

	// A second agent on node1 that would not collide with the first.
	base := func(state string) map[string]string {
		return map[string]string{
			"--node-name": "second", "--pod-cidr": "10.244.50.0/24", "--advertise-address": n1.Addr.String(),
			"--interface": "weft1", "--listen-port": "51830", "--gossip-port": "7950", "--pq-port": "51831",
			"--http-addr": "127.0.0.1:9600", "--state-dir": filepath.Join(dir, state),
			"--gossip-key-file": c.GossipKey,
		}
	}
	cases := []struct {
		name string
		set  map[string]string
		drop []string
		want string
	}{
		{"pod CIDR is not a CIDR", map[string]string{"--pod-cidr": "10.244.1.0/33"}, nil, `--pod-cidr "10.244.1.0/33"`},
		{"pod CIDR has host bits", map[string]string{"--pod-cidr": "10.244.1.7/24"}, nil, "host bits set"},
		{"two v4 pod CIDRs", map[string]string{"--pod-cidr": "10.244.50.0/24,10.244.51.0/24"}, nil, "one CIDR per address family"},
		{"pod CIDR swallows the underlay", map[string]string{"--pod-cidr": "0.0.0.0/0"}, nil, "too large"},
		{"no gossip key", nil, []string{"--gossip-key-file"}, "--gossip-key-file is required"},
		{"gossip key of the wrong length", map[string]string{"--gossip-key-file": shortKey}, nil, "want base64 of 32 bytes"},
		{"gossip key readable by others", map[string]string{"--gossip-key-file": openKey}, nil, "mode 0644"},
		{"gossip key missing", map[string]string{"--gossip-key-file": filepath.Join(dir, "nope.key")}, nil, "no such file"},
		{"private key corrupt", map[string]string{"--state-dir": badPriv}, nil, "private.key: want base64"},
		{"WireGuard port in use", map[string]string{"--listen-port": "51820"}, nil, "listen port 51820/udp is already in use"},
		{"gossip port in use", map[string]string{"--gossip-port": "7946"}, nil, "start gossip"},
		{"http port in use", map[string]string{"--http-addr": "127.0.0.1:9587"}, nil, "address already in use"},
		{"key exchange port in use", map[string]string{"--pq-port": "51821"}, nil, "key exchange port 51821/tcp"},
		{"unknown --pq mode", map[string]string{"--pq": "maybe"}, nil, `--pq "maybe": want preferred, required or off`},
		{"same port for WireGuard and gossip", map[string]string{"--gossip-port": "51830"}, nil, "separate UDP ports"},
		{"interface name too long", map[string]string{"--interface": "weft-much-too-long"}, nil, "--interface"},
		{"bad join seed", map[string]string{"--join": "10.99.0.11:99999"}, nil, "--join"},
		{"unknown flag", map[string]string{"--bogus": "1"}, nil, "flag provided but not defined: -bogus"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags := base(filepath.Join("state", string(rune('a'+i))))
			for k, v := range tc.set {
				flags[k] = v
			}
			for _, k := range tc.drop {
				delete(flags, k)
			}
			var args []string
			for k, v := range flags {
				args = append(args, k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := n1.Command(ctx, filepath.Join(c.Bins, "weft-agent"), args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("agent kept running; want it to refuse to start")
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("agent exited %v; want a non-zero exit", err)
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr = %q; want one line containing %q", msg, tc.want)
			}
			assertNoSecondDevice(t, n1)
			t.Logf("exit %d: %s", ee.ExitCode(), msg)
		})
	}
	// The working agent never noticed.
	c.WaitMesh(5 * time.Second)
}

func assertNoSecondDevice(t *testing.T, n *netlab.Node) {
	t.Helper()
	if out, err := n.Run(context.Background(), "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "weft1") {
		t.Fatalf("a failed start left a link behind (%v):\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(n.RunDir, "weft1.sock")); err == nil {
		t.Fatal("a failed start left its UAPI socket behind")
	}
}
