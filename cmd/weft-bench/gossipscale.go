package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/source/gossip"
)

// gossipScale measures memberlist as the agents run it (a profile's
// timings, encrypted, each member announcing node metadata of a real
// node's size) with the members spread over several processes, as many as
// this machine carries, and models the cost per node at larger sizes from
// what it measured (issue 31: gossip at thousands of members).
//
// What a member costs splits in two. Probes and gossip run at fixed
// intervals whatever the size (measured: CPU and bytes sent per member
// over an idle window). Push-pull, memberlist's anti-entropy, sends the
// whole member list: its size grows with N, its interval with log2(N)
// (memberlist's pushPullScale). It is measured per exchange (bytes each
// side sends, CPU of both sides) and modelled per member: each member
// starts one exchange per interval and answers one on average.
//
// The members of one process share its Go runtime; an agent's member does
// not. So beside the cluster run one member alone in its process (what a
// node pays, its runtime's wake-ups included) and an empty process (the
// control): "alone - empty" is the member's own cost.
//
//	weft-bench gossip-scale --profile kubernetes --members 250,500,1000 --per 50
func gossipScale(args []string) error {
	fs := flag.NewFlagSet("weft-bench gossip-scale", flag.ContinueOnError)
	profile := fs.String("profile", gossip.Kubernetes, "gossip profile: standalone or kubernetes")
	members := fs.String("members", "250,500,1000", "member counts")
	per := fs.Int("per", 50, "members per process")
	idle := fs.Duration("idle", 30*time.Second, "how long probes and gossip are measured, once every member sees every other")
	model := fs.Int("model", 5000, "the size the cost is modelled at")
	probe := fs.Duration("probe", 0, "probe interval instead of the profile's (0: the profile's)")
	gossipEvery := fs.Duration("gossip", 0, "gossip interval instead of the profile's (0: the profile's)")
	compress := fs.Bool("compress", true, "memberlist compresses messages (its default, and the agents'; false: measure it off)")
	cpuprofile := fs.String("cpuprofile", "", "a directory: CPU profiles of each size's measured window, of the first process (<members>.pprof) and of the member alone (<members>-alone.pprof)")
	child := fs.Bool("child", false, "run members in this process (the parent starts each so)")
	seed := fs.String("seed", "", "child: the address to join")
	total := fs.Int("total", 0, "child: the members in all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cc := childConfig{profile: *profile, probe: *probe, gossip: *gossipEvery, compress: *compress, cpuprofile: *cpuprofile}
	if *child {
		return gossipScaleChild(cc, *per, *total, *seed)
	}
	if *per < 2 || *per > 200 {
		return fmt.Errorf("--per %d: want 2-200", *per)
	}
	fmt.Printf("gossip at scale, profile %s, encrypted, %d members per process, metadata ~%d bytes a member (each its own)\n", *profile, *per, len(benchMeta(1234)))
	fmt.Println("members\tprocesses\tsettled\tprobe+gossip CPU %/member\talone: CPU %\talone: datagrams out/in per s\tempty process: CPU %\tprobe+gossip B/s sent/member\tpush-pull bytes/side\tpush-pull CPU ms/exchange\tpush-pull every\tmodel CPU %/member\tmodel alone-empty: CPU %\tmodel B/s sent/member")
	var last *scaleRow
	for _, s := range strings.Split(*members, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2**per || n > 4000 {
			return fmt.Errorf("--members %q: want %d-4000", s, 2**per)
		}
		r, err := gossipScaleRun(cc, n, *per, *idle)
		if err != nil {
			return fmt.Errorf("%d members: %w", n, err)
		}
		r.print(*profile)
		last = r
	}
	if last != nil {
		// Probes and gossip as measured at the largest size; push-pull's
		// bytes and CPU grow with the member list (linearly from the
		// largest size), its interval with log2(N).
		m := *last
		f := float64(*model) / float64(last.n)
		m.n, m.procs, m.settle = *model, 0, "modelled"
		m.ppBytes *= f
		m.ppCPU = time.Duration(float64(m.ppCPU) * f)
		m.print(*profile)
	}
	return nil
}

// scaleRow is one size's figures.
type scaleRow struct {
	n, procs     int
	settle       string
	cpuPct       float64 // probes and gossip, % of a core per member
	alonePct     float64 // probes and gossip of the member alone in its process, % of a core
	emptyPct     float64 // a process of no members beside them, % of a core
	aloneOut     float64 // datagrams the member alone sent, per second
	aloneIn      float64 // and received
	udpBps       float64 // probes and gossip, bytes/s sent per member
	ppBytes      float64 // one push-pull: bytes each side sends
	ppCPU        time.Duration
	pushPullTime time.Duration
}

func (r *scaleRow) print(profile string) {
	c, _ := gossip.MemberlistConfig(profile)
	r.pushPullTime = pushPullEvery(c.PushPullInterval, r.n)
	// Per member and interval: the exchange it starts and, on average,
	// one it answers: its state sent twice, and the CPU of one exchange
	// (its side of two).
	secs := r.pushPullTime.Seconds()
	cpu := r.cpuPct + r.ppCPU.Seconds()/secs*100
	aloneCPU := r.alonePct - r.emptyPct + r.ppCPU.Seconds()/secs*100
	bps := r.udpBps + 2*r.ppBytes/secs
	procs := strconv.Itoa(r.procs)
	if r.procs == 0 {
		procs = "-"
	}
	fmt.Printf("%d\t%s\t%s\t%.4f\t%.4f\t%.2f/%.2f\t%.4f\t%.0f\t%.0f\t%.2f\t%v\t%.4f\t%.4f\t%.0f\n", r.n, procs, r.settle, r.cpuPct, r.alonePct, r.aloneOut, r.aloneIn, r.emptyPct, r.udpBps, r.ppBytes,
		float64(r.ppCPU.Microseconds())/1000, r.pushPullTime, cpu, aloneCPU, bps)
}

// pushPullEvery is memberlist's push-pull interval at n members
// (pushPullScale: the interval times ceil(log2(n/32))+1 beyond 32).
func pushPullEvery(interval time.Duration, n int) time.Duration {
	if n <= 32 {
		return interval
	}
	return time.Duration(math.Ceil(math.Log2(float64(n))-5)+1) * interval
}

// scaleChild is a child process and its lines.
type scaleChild struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func (c *scaleChild) ask(q string) ([]string, error) {
	if _, err := fmt.Fprintln(c.in, q); err != nil {
		return nil, err
	}
	if !c.lines.Scan() {
		return nil, fmt.Errorf("a member process ended: %v", c.lines.Err())
	}
	return strings.Fields(c.lines.Text()), nil
}

func gossipScaleRun(cc childConfig, n, per int, idle time.Duration) (*scaleRow, error) {
	var children []*scaleChild
	defer func() {
		for _, c := range children {
			_ = c.in.Close()
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	}()
	start := func(m int, seed string) (*scaleChild, error) {
		args := []string{"gossip-scale", "--child", "--profile", cc.profile, "--probe", cc.probe.String(), "--gossip", cc.gossip.String(), "--compress=" + strconv.FormatBool(cc.compress), "--per", strconv.Itoa(m), "--total", strconv.Itoa(n), "--seed", seed}
		switch {
		case cc.cpuprofile == "":
		case seed == "":
			args = append(args, "--cpuprofile", filepath.Join(cc.cpuprofile, fmt.Sprintf("%d.pprof", n)))
		case m == 1:
			args = append(args, "--cpuprofile", filepath.Join(cc.cpuprofile, fmt.Sprintf("%d-alone.pprof", n)))
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := &scaleChild{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
		children = append(children, c)
		if !c.lines.Scan() { // "up ADDR" once its members have joined
			return nil, errors.New("a member process ended before its members joined")
		}
		return c, nil
	}
	first, err := start(per, "")
	if err != nil {
		return nil, err
	}
	seed := strings.TrimPrefix(first.lines.Text(), "up ")
	for left := n - per - 1; left > 0; left -= per {
		if _, err := start(min(per, left), seed); err != nil {
			return nil, err
		}
	}
	// One member alone in its process, as an agent runs it: its CPU is
	// the node's own, its Go runtime's included (the others share theirs
	// among per members).
	alone, err := start(1, seed)
	if err != nil {
		return nil, err
	}
	// And a process of no members: what a Go process of this program
	// costs on this machine with nothing to do (alone - empty is the
	// member's own cost).
	empty, err := start(0, seed)
	if err != nil {
		return nil, err
	}
	r := &scaleRow{n: n, procs: len(children)}
	t0 := time.Now()
	least := 0
	for time.Since(t0) < 5*time.Minute {
		least = n
		for _, c := range children {
			f, err := c.ask("count")
			if err != nil {
				return nil, err
			}
			v, _ := strconv.Atoi(f[0])
			least = min(least, v)
		}
		if least == n {
			r.settle = time.Since(t0).Round(100 * time.Millisecond).String()
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r.settle == "" {
		r.settle = fmt.Sprintf("> 5m (the fewest seen %d)", least)
	}
	// The joins' broadcasts die down: each is retransmitted ~4·log10(N)
	// times, a few per gossip round, so N joins keep gossip busy for
	// minutes. Idle, a member sends a ping per probe interval and answers
	// one on average: wait (at most 10 minutes) until the members send at
	// most 1.5 times that in a 10 s window. (Two windows alike, the first
	// rule, took a slow steady fall for quiet at 500 with gossip 1 s.)
	probe := cc.probe
	if probe == 0 {
		c, _ := gossip.MemberlistConfig(cc.profile)
		probe = c.ProbeInterval
	}
	idleRate := 2 / probe.Seconds() // datagrams a member sends per second, idle
	quiet := "> 10m: not idle, the figures include the joins' gossip"
	for t1 := time.Now(); time.Since(t1) < 10*time.Minute; {
		ws, err := measureAll(children, 10*time.Second)
		if err != nil {
			return nil, err
		}
		sent := 0.0
		for _, w := range ws {
			sent += w.sent
		}
		if sent/10/float64(n) <= 1.5*idleRate {
			quiet = time.Since(t1).Round(time.Second).String()
			break
		}
	}
	r.settle += ", quiet after " + quiet
	// One push-pull's cost, both ends in one process (the first).
	pp, err := first.ask("pushpull 10")
	if err != nil {
		return nil, err
	}
	ppNS, _ := strconv.ParseFloat(pp[0], 64)
	r.ppBytes, _ = strconv.ParseFloat(pp[1], 64)
	r.ppCPU = time.Duration(ppNS)
	// Probes and gossip: every process over the same window; push-pulls
	// that fell in it are taken out at their measured cost.
	ws, err := measureAll(children, idle)
	if err != nil {
		return nil, err
	}
	var w window
	for i, c := range ws {
		if children[i] != empty {
			w.cpu, w.udp, w.streams = w.cpu+c.cpu, w.udp+c.udp, w.streams+c.streams
		}
	}
	r.cpuPct = max(w.cpu-w.streams*float64(r.ppCPU), 0) / float64(idle) * 100 / float64(n)
	r.udpBps = w.udp / idle.Seconds() / float64(n)
	for i, c := range ws {
		switch children[i] {
		case alone:
			r.alonePct = max(c.cpu-c.streams*float64(r.ppCPU), 0) / float64(idle) * 100
			r.aloneOut, r.aloneIn = c.sent/idle.Seconds(), c.received/idle.Seconds()
		case empty:
			r.emptyPct = c.cpu / float64(idle) * 100
		}
	}
	return r, nil
}

// window is what members did over one window: CPU (ns), datagram bytes
// sent, streams started, datagrams sent and received.
type window struct{ cpu, udp, streams, sent, received float64 }

// measureAll measures every process over the same window d.
func measureAll(children []*scaleChild, d time.Duration) ([]window, error) {
	var wg sync.WaitGroup
	res := make([][]string, len(children))
	errs := make([]error, len(children))
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = c.ask("measure " + d.String())
		}()
	}
	wg.Wait()
	out := make([]window, len(children))
	for i := range res {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if len(res[i]) != 5 {
			return nil, fmt.Errorf("a member process answered %q", res[i])
		}
		v := make([]float64, 5)
		for j, s := range res[i] {
			v[j], _ = strconv.ParseFloat(s, 64)
		}
		out[i] = window{cpu: v[0], udp: v[1], streams: v[2], sent: v[3], received: v[4]}
	}
	return out, nil
}
