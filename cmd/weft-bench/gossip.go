package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weftnet/weft/source/gossip"
)

// gossipProfiles measures memberlist profiles in one process (issue 19's
// first gossip figures; loopback, so network delay is not in them): for
// each profile and member count, the time until every member sees every
// other, until a new member reaches all, until a member shut down without
// leaving is dead to all, and the idle CPU over 10 s.
//
//	weft-bench gossip --profiles standalone,kubernetes --members 50,100,200
func gossipProfiles(args []string) error {
	fs := flag.NewFlagSet("weft-bench gossip", flag.ContinueOnError)
	profiles := fs.String("profiles", "standalone,kubernetes", "standalone (the agent's: memberlist's LAN defaults), kubernetes (the agent's in Kubernetes mode: probe 2 s, gossip 500 ms, push-pull 120 s), lan (memberlist's own)")
	members := fs.String("members", "50,100,200", "member counts")
	idle := fs.Duration("idle", 10*time.Second, "how long idle CPU is measured")
	one := fs.Bool("one", false, "measure one profile and member count in this process (the parent runs each so)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *one {
		n, err := strconv.Atoi(*members)
		if err != nil || n < 3 || n > 1000 {
			return fmt.Errorf("--members %q: want 3-1000", *members)
		}
		return gossipRun(*profiles, n, *idle)
	}
	fmt.Println("profile\tmembers\tsettle\tjoin reaches all\tfailure seen by all\tidle CPU % of a core\tper member")
	for _, p := range strings.Split(*profiles, ",") {
		for _, s := range strings.Split(*members, ",") {
			// A fresh process each: the members of a run before, shut down
			// in the same process, kept a later run from settling.
			cmd := exec.Command(os.Args[0], "gossip", "--one", "--profiles", p, "--members", s, "--idle", idle.String())
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s with %s members: %w", p, s, err)
			}
		}
	}
	return nil
}

func gossipConf(profile, name string) (*memberlist.Config, error) {
	var c *memberlist.Config
	switch profile {
	case "lan":
		c = memberlist.DefaultLANConfig()
	case "weft", "tuned": // the names of the first figures
		profile = map[string]string{"weft": gossip.Standalone, "tuned": gossip.Kubernetes}[profile]
		fallthrough
	default:
		var err error
		if c, err = gossip.MemberlistConfig(profile); err != nil {
			return nil, err
		}
	}
	c.Name, c.BindAddr, c.BindPort = name, "127.0.0.1", 0
	c.Logger = log.New(io.Discard, "", 0)
	return c, nil
}

func gossipRun(profile string, n int, idle time.Duration) error {
	var ms []*memberlist.Memberlist
	defer func() {
		for _, m := range ms {
			_ = m.Shutdown() // the lab process ends right after
		}
	}()
	start := func(name, seed string) (*memberlist.Memberlist, error) {
		c, err := gossipConf(profile, name)
		if err != nil {
			return nil, err
		}
		m, err := memberlist.Create(c)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
		if seed != "" {
			if _, err := m.Join([]string{seed}); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	first, err := start("m0", "")
	if err != nil {
		return err
	}
	seed := fmt.Sprintf("127.0.0.1:%d", first.LocalNode().Port)
	for i := 1; i < n; i++ {
		if _, err := start(fmt.Sprintf("m%d", i), seed); err != nil {
			return err
		}
	}
	// all waits until every member counts want live members; a profile
	// that has not settled in 2 minutes is a result too ("> 2m").
	all := func(members []*memberlist.Memberlist, want int) string {
		t0 := time.Now()
		for time.Since(t0) < 2*time.Minute {
			done := true
			for _, m := range members {
				if m.NumMembers() != want {
					done = false
					break
				}
			}
			if done {
				return time.Since(t0).Round(time.Millisecond).String()
			}
			time.Sleep(10 * time.Millisecond)
		}
		return "> 2m"
	}
	settle := all(ms, n)
	c0 := cpuTime()
	time.Sleep(idle)
	busy := cpuTime() - c0
	if _, err := start("new", seed); err != nil {
		return err
	}
	join := all(ms, n+1)
	victim := ms[1]
	rest := append([]*memberlist.Memberlist{ms[0]}, ms[2:]...)
	_ = victim.Shutdown() // no Leave: a crash
	fail := all(rest, n)
	pct := float64(busy) / float64(idle) * 100
	fmt.Printf("%s\t%d\t%s\t%s\t%s\t%.1f\t%.3f\n", profile, n, settle, join, fail, pct, pct/float64(n))
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
