package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NamePrefix starts the name of every namespace a lab creates.
const NamePrefix = "wl"

// Underlay addressing: private ranges that only exist inside the lab.
var (
	UnderlayV4 = netip.MustParsePrefix("10.99.0.0/24")
	UnderlayV6 = netip.MustParsePrefix("fd99::/64")
)

// Lab is one namespace-built cluster.
type Lab struct {
	ID       string // per-run prefix, e.g. wl4711a
	Dir      string // scratch directory for node state and logs
	Underlay string // name of the underlay namespace (bridge br0 inside)

	mu    sync.Mutex
	nodes []*Node
	procs []*Proc
	nsAll []string
	keep  bool
}

// Options configures New.
type Options struct {
	// Dir is where node state and logs go; empty: a new temporary directory.
	Dir string
}

var labSeq struct {
	sync.Mutex
	n int
}

// New creates the underlay. Close removes everything the lab created.
func New(opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("netlab needs %s: %w", tool, err)
		}
	}
	Sweep()
	labSeq.Lock()
	labSeq.n++
	seq := labSeq.n
	labSeq.Unlock()
	l := &Lab{ID: fmt.Sprintf("%s%d%c", NamePrefix, os.Getpid(), 'a'+rune(seq%26))}
	l.Dir = opts.Dir
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "weft-"+l.ID+"-")
		if err != nil {
			return nil, err
		}
		l.Dir = d
	}
	// Each node's processes see their own run dir bind-mounted on
	// /run/wireguard, which therefore has to exist as a mount point.
	if err := os.MkdirAll("/run/wireguard", 0o755); err != nil {
		return nil, err
	}
	l.Underlay = l.ID + "-ul"
	if err := l.addNS(l.Underlay); err != nil {
		return nil, err
	}
	if err := runAll(
		[]string{"ip", "-n", l.Underlay, "link", "set", "lo", "up"},
		[]string{"ip", "-n", l.Underlay, "link", "add", "br0", "type", "bridge"},
		[]string{"ip", "-n", l.Underlay, "link", "set", "br0", "up"},
	); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) addNS(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	l.mu.Lock()
	l.nsAll = append(l.nsAll, name)
	l.mu.Unlock()
	return nil
}

// Nodes returns the nodes added so far.
func (l *Lab) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Node(nil), l.nodes...)
}

// Keep leaves the scratch directory (logs, captures) in place after Close.
func (l *Lab) Keep() { l.keep = true }

// Close stops every process the lab started, then deletes its namespaces
// (which deletes the links, TUN devices and routes inside) and its scratch dir.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	nss := append([]string(nil), l.nsAll...)
	l.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNS(nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if !l.keep {
		os.RemoveAll(l.Dir)
	}
	return errors.Join(errs...)
}

// deleteNS kills what still runs inside a namespace and deletes it.
func deleteNS(name string) error {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	}
	if err := run("ip", "netns", "del", name); err != nil {
		if _, statErr := os.Stat(filepath.Join("/run/netns", name)); os.IsNotExist(statErr) {
			return nil
		}
		return err
	}
	return nil
}

// Sweep deletes namespaces left by lab runs whose process is gone.
func Sweep() {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, NamePrefix) {
			continue
		}
		digits := strings.TrimLeft(name[len(NamePrefix):], "0123456789")
		pid, err := strconv.Atoi(name[len(NamePrefix) : len(name)-len(digits)])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // that run is still going
		}
		_ = deleteNS(name) // a sweep: what cannot go now, the next one tries again
	}
}

func run(args ...string) error {
	_, err := output(args...)
	return err
}

func output(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func runAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return err
		}
	}
	return nil
}
