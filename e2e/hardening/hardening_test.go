package hardening

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/mesh"
)

// pqPort is the key exchange's port as the lab's agents run it.
const pqPort = 51821

// holdConns keeps n connections from host to dst open and idle until stop
// closes, opening a new one 50 ms after one is closed; it returns how many
// it opened. A server that closes what it cannot serve at once sees each
// of its free slots taken again within milliseconds.
func holdConns(host *netlab.Node, dst netip.AddrPort, n int, stop <-chan struct{}) *atomic.Int64 {
	var opened atomic.Int64
	for range n {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialFor(host, netip.Addr{}, dst, time.Second)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				opened.Add(1)
				closed := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, c); close(closed) }()
				select {
				case <-stop:
				case <-closed:
				}
				c.Close()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	return &opened
}

// dialFor opens a TCP connection from host (from src, when valid) to dst,
// giving up after timeout.
func dialFor(host *netlab.Node, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return host.DialFrom(ctx, src, "tcp", dst.String())
}

// TestKeyExchangeFloodCutsNoPair (item 1; Kubernetes mode, where a
// restarting node stays in its peers' view and they keep their key for
// it): a host on the underlay that is no node holds 64 idle connections
// open to each node's key-exchange port for 4 minutes, and node2's agent
// restarts 20 s into it (preferred mode: it comes back with no preshared
// key while node1 keeps the old one). The pair must agree a key again, and
// carry pod traffic, at most 60 s after the flood ends (weft does better:
// a stranger's connections never take a node's place, so the key comes
// during the flood). WEFT_FLOOD_TIME shortens the flood for a quick run.
func TestKeyExchangeFloodCutsNoPair(t *testing.T) {
	flood := 4 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("WEFT_FLOOD_TIME")); err == nil {
		flood = d
	}
	k := labtest.NewKubeCluster(t, 2)
	c := k.Cluster
	attacker, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Lab.Nodes() {
		k.StartKube(n)
	}
	c.WaitMesh(30 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	labtest.Eventually(t, 15*time.Second, "node1 and node2 agree a preshared key", func() bool { _, ok := labtest.PairKey(t, n1, n2); return ok })
	p1, p2 := c.AddPod(n1, "flood-a"), c.AddPod(n2, "flood-b")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}})

	stop := make(chan struct{})
	start := time.Now()
	var opened []*atomic.Int64
	for _, n := range []*netlab.Node{n1, n2} {
		opened = append(opened, holdConns(attacker, netip.AddrPortFrom(n.Addr, pqPort), 64, stop))
	}
	time.Sleep(20 * time.Second)
	c.Agents[n2.Name].Stop()
	k.StartKube(n2)
	restarted := time.Now()
	var keyed time.Duration
	for time.Since(start) < flood {
		if _, ok := labtest.PairKey(t, n1, n2); ok && keyed == 0 {
			keyed = time.Since(restarted)
		}
		time.Sleep(time.Second)
	}
	close(stop)
	ended := time.Now()
	t.Logf("flood: %d and %d connections opened to node1 and node2 in %v", opened[0].Load(), opened[1].Load(), flood)
	labtest.Eventually(t, 60*time.Second, "node1 and node2 agree a key after the flood", func() bool { _, ok := labtest.PairKey(t, n1, n2); return ok })
	labtest.Eventually(t, 60*time.Second-time.Since(ended), "pods on node1 and node2 reach each other after the flood", func() bool {
		return p1.Ping(context.Background(), p2.Addr(false), 1) && p2.Ping(context.Background(), p1.Addr(true), 1)
	})
	if keyed > 0 {
		t.Logf("node2, restarted during the flood, agreed its key with node1 %v after the restart (during the flood); pods reach each other %v after it ended", keyed.Round(time.Second), time.Since(ended).Round(time.Second))
	} else {
		t.Logf("node2 agreed its key with node1 only %v after the flood ended", time.Since(ended).Round(time.Second))
	}
	if v := c.Metric(n2, `weft_pq_failures_total{reason="busy"}`); v < 1 {
		t.Errorf("node2 refused %v of the flood's connections, want them counted (busy)", v)
	}
}

// TestKeylessPairRecovers (item 1, second half; Kubernetes mode, where the
// Node keeps a restarting node in its peers' view, so they keep their key
// for it): node2's agent restarts while node1 drops its key exchanges (as a
// flood or a broken link would) and node2's kept keys are lost (a wiped
// state directory; with them it would resume under the old key), so node2
// has no preshared key and node1 the old one: their handshakes fail. node1
// answers gossip, so node2 does not rest it (plan.Options.Live: a fault
// between live agents stays visible and keeps trying). Once the exchanges
// pass again the pair must agree a key and carry traffic within 60 s,
// although neither end's rotation (10 min) is due.
func TestKeylessPairRecovers(t *testing.T) {
	k := labtest.NewKubeCluster(t, 2)
	c := k.Cluster
	for _, n := range c.Lab.Nodes() {
		k.StartKubeWith(n, nil, "--psk-rotation", "10m")
	}
	c.WaitMesh(30 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	labtest.Eventually(t, 15*time.Second, "node1 and node2 agree a preshared key", func() bool { _, ok := labtest.PairKey(t, n1, n2); return ok })
	old, _ := labtest.PairKey(t, n1, n2)
	p1, p2 := c.AddPod(n1, "rest-a"), c.AddPod(n2, "rest-b")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}})

	block := fmt.Sprintf("add table inet block; add chain inet block in { type filter hook input priority -10 ; } ; add rule inet block in tcp dport %d drop", pqPort)
	if err := nsRun(n1.NS, "nft", block); err != nil {
		t.Fatal(err)
	}
	c.Agents[n2.Name].Stop()
	if err := os.Remove(filepath.Join(n2.StateDir, keys.StoreFile)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	k.StartKubeWith(n2, nil, "--psk-rotation", "10m")
	labtest.Eventually(t, 30*time.Second, "node2's agent is ready", func() bool { return labtest.Readyz(n2) == 200 })
	// Beyond mesh.NeverAnswered: a peer nothing answered for would rest now.
	time.Sleep(mesh.NeverAnswered + 5*time.Second)
	if v := c.Metric(n2, "weft_peers_dormant"); v != 0 {
		t.Errorf("node2 rests %v peers; node1 answers gossip, so it must keep trying", v)
	}
	if p1.Ping(context.Background(), p2.Addr(false), 1) {
		t.Fatal("the pair carries traffic with disagreeing keys: the setup did not cut it")
	}
	if err := nsRun(n1.NS, "nft", "delete table inet block"); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	labtest.Eventually(t, 60*time.Second, "node1 and node2 agree a new key", func() bool {
		k, ok := labtest.PairKey(t, n1, n2)
		return ok && k != old
	})
	labtest.Eventually(t, 60*time.Second-time.Since(opened), "pods on node1 and node2 reach each other", func() bool {
		return p1.Ping(context.Background(), p2.Addr(false), 1) && p2.Ping(context.Background(), p1.Addr(true), 1)
	})
	t.Logf("a pair whose keys disagreed agreed a new key and carried traffic %v after exchanges passed again", time.Since(opened).Round(100*time.Millisecond))
}

// recordM1 captures the underlay until an exchange's first message crosses
// it and returns that message and where it went.
func recordM1(t *testing.T, c *labtest.Cluster) ([]byte, netip.AddrPort) {
	t.Helper()
	pcap := filepath.Join(c.Lab.Dir, "m1.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.Lab.Underlay, "tcpdump", "-i", "br0", "-U", "-n", "-s", "0", "-w", pcap,
		fmt.Sprintf("tcp dst port %d", pqPort))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	var m1 []byte
	var dst netip.AddrPort
	labtest.Eventually(t, 30*time.Second, "an exchange's first message on the underlay", func() bool {
		b, err := os.ReadFile(pcap)
		if err != nil {
			return false
		}
		m1, dst = findM1(b)
		return m1 != nil
	})
	return m1, dst
}

// m1Magic and m1Size are package pq's first message: its magic and length.
const (
	m1Magic = "weftpq\x00\x01"
	m1Size  = 8 + 2*32 + 32 + 1184 + 32
)

// findM1 reads a little-endian pcap of Ethernet frames and returns the
// first TCP payload that is a whole first message, and its destination.
func findM1(b []byte) ([]byte, netip.AddrPort) {
	if len(b) < 24 {
		return nil, netip.AddrPort{}
	}
	for off := 24; off+16 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : min(off+16+n, len(b))]
		off += 16 + n
		if len(frame) < 14 {
			continue
		}
		var ip []byte
		var dst netip.Addr
		var l4 []byte
		switch binary.BigEndian.Uint16(frame[12:]) {
		case 0x0800:
			ip = frame[14:]
			if len(ip) < 20 || ip[9] != 6 {
				continue
			}
			total := min(int(binary.BigEndian.Uint16(ip[2:])), len(ip))
			dst = netip.AddrFrom4([4]byte(ip[16:20]))
			l4 = ip[int(ip[0]&0x0f)*4 : total]
		case 0x86dd:
			ip = frame[14:]
			if len(ip) < 40 || ip[6] != 6 {
				continue
			}
			dst = netip.AddrFrom16([16]byte(ip[24:40]))
			l4 = ip[40:min(40+int(binary.BigEndian.Uint16(ip[4:])), len(ip))]
		default:
			continue
		}
		if len(l4) < 20 {
			continue
		}
		payload := l4[int(l4[12]>>4)*4:]
		if len(payload) >= m1Size && string(payload[:len(m1Magic)]) == m1Magic {
			return bytes.Clone(payload[:m1Size]), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))
		}
	}
	return nil, netip.AddrPort{}
}

// TestReplayedFirstMessageStopsNoRotation (item 2): a first message of a
// real exchange, recorded on the underlay, is sent again and again from
// three addresses of a host on the underlay (three in parallel, so no
// per-source limit is what stops them) while node1 and node2 rotate their
// key every 5 s. The rotations go on at their interval, and the replays
// are refused and counted. WEFT_REPLAY_TIME sets how long (default 60 s:
// the issue asks 10 minutes at the 3-minute default; this is the same
// count of rotations, 12, at a shorter interval).
func TestReplayedFirstMessageStopsNoRotation(t *testing.T) {
	span := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("WEFT_REPLAY_TIME")); err == nil {
		span = d
	}
	const rotation = 5 * time.Second
	c := labtest.NewCluster(t, 2)
	attacker, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	var srcs []netip.Addr
	for i := 201; i <= 203; i++ {
		a := netip.AddrFrom4([4]byte{10, 99, 0, byte(i)})
		if err := labtest.IpIn(attacker.NS, "addr", "add", a.String()+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, a)
	}
	for _, n := range c.Lab.Nodes() {
		c.Start(n, "--psk-rotation", rotation.String())
	}
	c.WaitMesh(20 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	m1, dst := recordM1(t, c)
	target := n1
	if dst.Addr() == n2.Addr || dst.Addr() == n2.Addr6 {
		target = n2
	}
	t.Logf("recorded a first message to %s (%s)", dst, target.Name)

	var replays, reached atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := dialFor(attacker, src, dst, time.Second)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				replays.Add(1)
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write(m1)
				reply := make([]byte, 1)
				if _, err := io.ReadFull(conn, reply); err == nil && reply[0] == 1 { // status ok: the responder took it
					reached.Add(1)
				}
				_, _ = io.Copy(io.Discard, conn)
				conn.Close()
			}
		}()
	}
	last, _ := labtest.PairKey(t, n1, n2)
	changes := 0
	start := time.Now()
	for time.Since(start) < span {
		if k, ok := labtest.PairKey(t, n1, n2); ok && k != last {
			changes++
			last = k
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	want := int(span / rotation / 2)
	t.Logf("%d replays of one first message in %v from 3 addresses, %d answered as fresh; the pair's key changed %d times (rotation every %v)", replays.Load(), span, reached.Load(), changes, rotation)
	if changes < want {
		t.Errorf("the pair's key changed %d times in %v under replay, want at least %d (rotation every %v)", changes, span, want, rotation)
	}
	if reached.Load() > 0 {
		t.Errorf("%d replays of a recorded first message were answered as fresh", reached.Load())
	}
	if replays.Load() < 10 {
		t.Errorf("only %d replays were sent: the attack did not run", replays.Load())
	}
	if v := c.Metric(target, `weft_pq_failures_total{reason="replay"}`); v < 1 {
		t.Errorf("%s counted %v replays", target.Name, v)
	}
}

// TestRotateKeyOnlyForRoot (item 3): for 60 s an unprivileged process on
// node1 (uid 65534, the node's network namespace: any hostNetwork pod or
// daemon) asks for a key rotation in a loop, on the HTTP port and on the
// control socket, while a pod on node1 pings a pod on node2: no rotation
// happens and the ping loses under 1 %. Root's weftctl rotate-key (the
// control) does rotate, once, and a second request within 30 s is refused.
func TestRotateKeyOnlyForRoot(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	p1, p2 := c.AddPod(n1, "rot-a"), c.AddPod(n2, "rot-b")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}})
	before := labtest.PublicKey(t, n1)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ping := p1.Command(ctx, "ping", "-q", "-i", "0.2", "-w", "62", p2.Addr(false).String())
	var pingOut bytes.Buffer
	ping.Stdout = &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(n1.StateDir, api.ControlSocket)
	script := fmt.Sprintf(`end=$(( $(date +%%s) + 60 ))
while [ "$(date +%%s)" -lt "$end" ]; do
  curl -s -o /dev/null -w 'http %%{http_code}\n' -m 2 -X POST http://%s%s
  curl -s -o /dev/null -w 'socket %%{http_code}\n' -m 2 --unix-socket %s -X POST http://agent%s
done`, netlab.AgentHTTP, api.RotateKeyPath, socket, api.RotateKeyPath)
	out, _ := n1.Run(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script)
	_ = ping.Wait()
	codes := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		codes[l]++
	}
	t.Logf("60 s of rotate-key requests as uid 65534: %v", codes)
	if codes["http 200"]+codes["socket 200"] > 0 {
		t.Errorf("an unprivileged process had the key rotated: %v", codes)
	}
	if codes["http 403"] < 10 {
		t.Errorf("the loop made %d refused HTTP requests: the attack did not run (%v)", codes["http 403"], codes)
	}
	if after := labtest.PublicKey(t, n1); after != before {
		t.Errorf("node1's key changed from %s to %s", before, after)
	}
	if v := c.Metric(n1, `weft_node_key_age_seconds`); v < 60 {
		t.Errorf("node1's key is %v s old: it was rotated during the loop", v)
	}
	loss := pingLoss(pingOut.String())
	t.Logf("pod-to-pod ping across the loop: %s", strings.TrimSpace(lastLines(pingOut.String(), 2)))
	if loss < 0 || loss >= 1 {
		t.Errorf("ping loss %v%% during the loop (want < 1 %%):\n%s", loss, pingOut.String())
	}

	// The control: root, on the socket, does rotate; again at once is refused.
	if out, err := n1.Run(ctx, filepath.Join(c.Bins, "weftctl"), "rotate-key", "--state-dir", n1.StateDir); err != nil {
		t.Fatalf("weftctl rotate-key as root: %v: %s", err, out)
	}
	if after := labtest.PublicKey(t, n1); after == before {
		t.Fatal("root's rotate-key did not change the key")
	}
	if out, err := n1.Run(ctx, filepath.Join(c.Bins, "weftctl"), "rotate-key", "--state-dir", n1.StateDir); err == nil || !strings.Contains(out, "429") {
		t.Errorf("a second rotate-key within 30 s: %v: %s (want 429 Too Many Requests)", err, out)
	}
}

// nsRun runs a command in a network namespace the lab made.
func nsRun(ns string, args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %v: %s", args, err, out)
	}
	return nil
}

// pingLoss is the packet loss in percent from ping's summary, -1 if none.
func pingLoss(out string) float64 {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "% packet loss"); i > 0 {
			f := strings.Fields(l[:i])
			var v float64
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// udpSink counts the datagrams that reach a pod on port 9999, by source.
type udpSink struct {
	mu   sync.Mutex
	from map[netip.Addr]int
	conn *net.UDPConn
}

func listenUDP(t *testing.T, p *netlab.Pod) *udpSink {
	t.Helper()
	s := &udpSink{from: map[netip.Addr]int{}}
	if err := p.Do(func() error {
		var err error
		s.conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.from[from.Addr().Unmap()]++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) count(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[a]
}

// sendUDP sends n datagrams from src (an address of the namespace that do
// runs in) to dst:9999.
func sendUDP(do func(func() error) error, src, dst netip.Addr, n int) error {
	return do(func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, &net.UDPAddr{IP: dst.AsSlice(), Port: 9999})
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte("weft spoof test")); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
}

// TestUnderlayCannotSpoofPods (item 6): a host on the underlay takes the
// addresses of a pod on node2 and routes datagrams from them, to a pod on
// node1, at node1's underlay address (IPv4 and IPv6). None arrives; the
// same datagrams from the real pod on node2 (through the tunnel) do.
func TestUnderlayCannotSpoofPods(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	attacker, err := c.Lab.AddOutside()
	if err != nil {
		t.Fatal(err)
	}
	c.StartAll()
	c.WaitMesh(20 * time.Second)
	n1 := c.Lab.Nodes()[0]
	victim, real := c.AddPod(n1, "victim"), c.AddPod(c.Lab.Nodes()[1], "impersonated")
	labtest.PingPods(t, [][2]*netlab.Pod{{real, victim}})
	sink := listenUDP(t, victim)
	for _, v6 := range []bool{false, true} {
		spoofed, dst, via, bits := real.Addr(v6), victim.Addr(v6), n1.Addr, 32
		if v6 {
			via, bits = n1.Addr6, 128
		}
		if err := labtest.IpIn(attacker.NS, "addr", "add", fmt.Sprintf("%s/%d", spoofed, bits), "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		if err := labtest.IpIn(attacker.NS, "route", "add", netip.PrefixFrom(dst, bits).String(), "via", via.String()); err != nil {
			t.Fatal(err)
		}
		if err := sendUDP(attacker.Do, spoofed, dst, 10); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if got := sink.count(spoofed); got > 0 {
			t.Errorf("%d of 10 datagrams spoofed from the underlay with pod address %s reached the pod on node1", got, spoofed)
		}
		// The control: the real pod's datagrams do arrive.
		if err := sendUDP(real.Do, spoofed, dst, 10); err != nil {
			t.Fatal(err)
		}
		labtest.Eventually(t, 5*time.Second, "the real pod's datagrams from "+spoofed.String()+" arrive", func() bool { return sink.count(spoofed) >= 9 })
		if err := labtest.IpIn(attacker.NS, "addr", "del", fmt.Sprintf("%s/%d", spoofed, bits), "dev", "lo"); err != nil {
			t.Fatal(err)
		}
	}
	if v := c.Metric(n1, `weft_pq_failures_total{reason="auth"}`); v != 0 {
		t.Errorf("unexpected key-exchange failures: %v", v)
	}
}

// TestDirectPathToAnotherSubnetFallsBack (item 5): node3 sits on another
// subnet behind a router and, like node1 and node2, claims location a and
// --intra-location direct. Its peers cannot route to it directly (its
// address is not on their link): node1 must still write everything else,
// be ready, send node3's pods through the tunnel (encrypted on the
// underlay), count the failure, and keep node2 direct.
func TestDirectPathToAnotherSubnetFallsBack(t *testing.T) {
	c := labtest.NewCluster(t, 2)
	n3, err := c.Lab.AddNodeBehind("node3", netlab.Router{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Lab.Nodes() {
		c.Start(n, "--location", "a", "--intra-location", "direct")
	}
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	c.WaitMesh(30 * time.Second)
	for _, n := range c.Lab.Nodes() {
		c.WaitReady(n, 20*time.Second)
		c.WaitCNIConf(n)
	}
	if v := c.Metric(n1, "weft_direct_path_failures_total"); v < 1 {
		t.Errorf("node1 counted %v direct path failures, want node3's", v)
	}
	st := c.Status(n1)
	if labtest.PeerOf(st, "node3").Path != "encrypted" || labtest.PeerOf(st, "node2").Path != "direct" {
		t.Errorf("node1's status: node2 %q, node3 %q; want direct and encrypted", labtest.PeerOf(st, "node2").Path, labtest.PeerOf(st, "node3").Path)
	}
	p1, p2, p3 := c.AddPod(n1, "d1"), c.AddPod(n2, "d2"), c.AddPod(n3, "d3")
	cp := c.StartCapture(t, "fallback")
	labtest.PingPods(t, [][2]*netlab.Pod{{p1, p2}, {p1, p3}, {p3, p1}, {p2, p3}})
	cp.Done()
	for _, v6 := range []bool{false, true} {
		if leaked := cp.Read("host", p3.Addr(v6).String()); len(leaked) > 0 {
			t.Errorf("node3's pod traffic crossed the underlay in clear: %s", leaked[0])
		}
	}
	if plain := cp.Read("src", p1.Addr(false).String(), "and", "dst", p2.Addr(false).String()); len(plain) == 0 {
		t.Error("node1 to node2 did not take the direct path")
	}
}

// TestPeerObjectsOnlyInsideExternalCIDRs (item 4): with --external-cidr
// 10.200.0.0/16,fd00:200::/48, Peer objects claiming 8.0.0.0/8,
// 64:ff9b::/96 or the Service range are refused on every node; of two
// claiming the same range the older wins although the newer's name sorts
// first, and still after an agent restarts (every node judges alike); a
// Peer whose endpoint lies inside its own range is refused.
func TestPeerObjectsOnlyInsideExternalCIDRs(t *testing.T) {
	k := labtest.NewKubeMesh(t, 2)
	key := func() string { k, _ := wgtypes.GenerateKey(); return k.PublicKey().String() }
	k.CreatePeer("wide", key(), "8.0.0.0/8")
	k.CreatePeer("nat64", key(), "64:ff9b::/96")
	k.CreatePeer("services", key(), "10.96.0.0/16")
	k.CreatePeer("zz-first", key(), "10.200.1.0/24")
	time.Sleep(1100 * time.Millisecond) // creation timestamps have whole seconds
	k.CreatePeer("aa-later", key(), "10.200.1.0/25")
	k.CreatePeerSpec("loop", map[string]any{"publicKey": key(), "allowedIPs": []any{"10.200.9.0/24"}, "endpoint": "10.200.9.1:51820"})
	check := func() {
		for _, n := range k.Lab.Nodes() {
			labtest.Eventually(t, 20*time.Second, n.Name+" accepts zz-first", func() bool { return labtest.PeerOf(k.Status(n), "peer/zz-first").Path == "external" })
			st := k.Status(n)
			for _, bad := range []string{"wide", "nat64", "services", "aa-later", "loop"} {
				if p := labtest.PeerOf(st, "peer/"+bad); p.Name != "" {
					t.Errorf("%s accepted Peer %s: %+v", n.Name, bad, p)
				}
			}
		}
	}
	check()
	n1 := k.Lab.Nodes()[0]
	if v := k.Metric(n1, `weft_peer_rejections_total{reason="external-outside"}`); v < 3 {
		t.Errorf("node1 counted %v external-outside refusals, want 3", v)
	}
	// Restarted, node2 sees both claimants at once: the older still wins.
	n2 := k.Lab.Nodes()[1]
	k.Agents[n2.Name].Stop()
	k.StartKube(n2)
	k.WaitReady(n2, 30*time.Second)
	check()
	routes, err := exec.Command("ip", "-n", n2.NS, "route", "show", "10.200.1.0/25").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(routes)) != "" {
		t.Errorf("node2 routes aa-later's 10.200.1.0/25: %s", routes)
	}
}
