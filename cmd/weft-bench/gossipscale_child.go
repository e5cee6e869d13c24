package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/source/gossip"
)

// The member processes of weft-bench gossip-scale (gossipscale.go): their
// members, what each announces, and the transport that counts what they send.

// benchMeta is the metadata a dual-stack node announces (its own key,
// endpoint, two pod CIDRs, a second address), different for each i as real
// nodes' are (memberlist compresses push-pull: alike metadata would
// flatter it).
func benchMeta(i int) []byte {
	k, _ := wgtypes.GeneratePrivateKey()
	a, b := byte(i>>8), byte(i)
	v4 := netip.AddrFrom4([4]byte{10, 99, a, b})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x99, 14: a, 15: b})
	out, err := peer.EncodeMeta(peer.NodeInfo{PublicKey: k.PublicKey(), Endpoint: netip.AddrPortFrom(v4, 51820),
		PodCIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + a>>4, a<<4 | b>>4, b << 4}), 28),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 2, 0x44, 6: a, 7: b}), 64)},
		NodeAddrs: []netip.Addr{v4, v6}})
	if err != nil {
		panic(err) // fixed input
	}
	return out
}

type metaDelegate []byte

func (d metaDelegate) NodeMeta(int) []byte                  { return d }
func (metaDelegate) NotifyMsg([]byte)                       {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (metaDelegate) LocalState(bool) []byte                 { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool) {}

// countingTransport counts what a member sends: datagrams (probes, acks,
// gossip) and bytes written on streams (push-pull, either side).
type countingTransport struct {
	*memberlist.NetTransport
	udp, streamBytes, streams atomic.Int64
	sent, received            atomic.Int64 // datagrams
	in                        chan net.Conn
	packets                   chan *memberlist.Packet
}

func newCountingTransport() (*countingTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, err
	}
	t := &countingTransport{NetTransport: nt, in: make(chan net.Conn), packets: make(chan *memberlist.Packet)}
	go func() {
		for c := range nt.StreamCh() {
			t.in <- &countingConn{Conn: c, n: &t.streamBytes}
		}
	}()
	go func() {
		for p := range nt.PacketCh() {
			t.received.Add(1)
			t.packets <- p
		}
	}()
	return t, nil
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.udp.Add(int64(len(b)))
	t.sent.Add(1)
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.udp.Add(int64(len(b)))
	t.sent.Add(1)
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(a, d)
	if err != nil {
		return nil, err
	}
	t.streams.Add(1)
	return &countingConn{Conn: c, n: &t.streamBytes}, nil
}

func (t *countingTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, d)
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.in }

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// childConfig is what every member process is started with.
type childConfig struct {
	profile    string        // gossip.MemberlistConfig's
	probe      time.Duration // instead of the profile's probe interval, if not 0
	gossip     time.Duration // instead of the profile's gossip interval, if not 0
	compress   bool          // memberlist's EnableCompression
	cpuprofile string        // a file: the CPU profile of each measured window, the last one kept
}

// gossipScaleChild runs m members, joined to seed (or the first of them
// the seed), and answers the parent's questions on stdin: count (the
// fewest members any of its members sees), pushpull K (CPU and bytes of
// one exchange between two of its members), measure D (CPU, datagram
// bytes sent, streams started, datagrams sent and received over D). m
// may be 1 (a member alone) or 0 (an empty process, the control).
func gossipScaleChild(cc childConfig, m, total int, seed string) error {
	key := make([]byte, 32) // every process the same key, as every node
	copy(key, "weft-bench gossip-scale key 0001")
	var buf [2]byte
	_, _ = rand.Read(buf[:])
	first := int(buf[0])<<8 | int(buf[1]) // this process's first member's metadata number
	var ms []*memberlist.Memberlist
	var trs []*countingTransport
	for i := range m {
		c, err := gossip.MemberlistConfig(cc.profile)
		if err != nil {
			return err
		}
		if cc.probe > 0 {
			c.ProbeInterval = cc.probe
		}
		if cc.gossip > 0 {
			c.GossipInterval = cc.gossip
		}
		c.EnableCompression = cc.compress
		tr, err := newCountingTransport()
		if err != nil {
			return err
		}
		var name [6]byte
		_, _ = rand.Read(name[:])
		c.Name = fmt.Sprintf("node-%x", name)
		c.Transport, c.SecretKey, c.Delegate = tr, key, metaDelegate(benchMeta(first+i))
		c.Logger = log.New(io.Discard, "", 0)
		ml, err := memberlist.Create(c)
		if err != nil {
			return err
		}
		ms, trs = append(ms, ml), append(trs, tr)
		if seed == "" && i == 0 {
			seed = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ml.LocalNode().Port)))
			continue
		}
		// The seed, or a member of this process already in (the
		// seed answers a push-pull of the whole list per join: spread
		// them); a join that times out on the busy machine is tried again.
		to := seed
		if i > 0 {
			to = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ms[mrand.IntN(i)].LocalNode().Port)))
		}
		for try := 0; try < 5; try++ {
			if _, err = ml.Join([]string{to}); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return err
		}
	}
	fmt.Println("up", seed)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "count":
			least := total
			for _, ml := range ms {
				least = min(least, ml.NumMembers())
			}
			fmt.Println(least)
		case len(f) == 2 && f[0] == "pushpull":
			k, _ := strconv.Atoi(f[1])
			to := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ms[1].LocalNode().Port)))
			b0 := trs[0].streamBytes.Load() + trs[1].streamBytes.Load()
			c0 := cpuTime()
			for range k {
				if _, err := ms[0].Join([]string{to}); err != nil {
					return err
				}
			}
			cpu := cpuTime() - c0
			b := trs[0].streamBytes.Load() + trs[1].streamBytes.Load() - b0
			fmt.Println(int64(cpu)/int64(k), b/int64(2*k))
		case len(f) == 2 && f[0] == "measure":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return err
			}
			sum := func() (udp, streams, sent, received int64) {
				for _, t := range trs {
					udp, streams = udp+t.udp.Load(), streams+t.streams.Load()
					sent, received = sent+t.sent.Load(), received+t.received.Load()
				}
				return
			}
			stop, err := startCPUProfile(cc.cpuprofile)
			if err != nil {
				return err
			}
			u0, s0, d0, r0 := sum()
			c0 := cpuTime()
			time.Sleep(d)
			cpu := cpuTime() - c0
			if err := stop(); err != nil {
				return err
			}
			u1, s1, d1, r1 := sum()
			fmt.Println(int64(cpu), u1-u0, s1-s0, d1-d0, r1-r0)
		default:
			return fmt.Errorf("unknown request %q", sc.Text())
		}
	}
	return sc.Err()
}

// startCPUProfile profiles this process into path until stop; "": nothing.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
