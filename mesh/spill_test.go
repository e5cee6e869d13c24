package mesh

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// TestSocketBurstArrivesWhole: 200 datagrams queued at the socket before
// wireguard-go reads reach it through the narrowed bind in order, none
// lost, none cut, with their endpoints. (Without coalescing, as on
// loopback, a read with GRO takes two; TestSpillHandsOnWhatTheReadTook
// has a read that takes 128.)
func TestSocketBurstArrivesWhole(t *testing.T) {
	b := newPathBind(nil)
	if b.BatchSize() != deviceBatch {
		t.Fatalf("the bind's batch is %d, want %d", b.BatchSize(), deviceBatch)
	}
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const total = 200
	for i := range total {
		if _, err := c.Write(datagram(i)); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for calls := 0; len(got) < total && calls < total; calls++ {
		bufs, sizes, eps := batch(b)
		n, err := fns[0](bufs, sizes, eps)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if eps[i] == nil || eps[i].DstToString() != c.LocalAddr().String() {
				t.Fatalf("packet %d came with endpoint %v, want %s", len(got), eps[i], c.LocalAddr())
			}
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	if len(got) != total {
		t.Fatalf("read %d datagrams, want %d", len(got), total)
	}
	for i, p := range got {
		if !bytes.Equal(p, datagram(i)) {
			t.Fatalf("datagram %d arrived as %d bytes starting %x, want %d bytes of its own", i, len(p), p[:min(8, len(p))], len(datagram(i)))
		}
	}
}

// TestSpillHandsOnWhatTheReadTook: a read of the kernel that fills all
// 128 slots (two coalesced messages split, as the standard bind does)
// reaches wireguard-go's batch of 64 as two calls, the first without a
// copy into the caller's buffers' place, the second without a read; the
// caller's buffers are not written after the call that handed them.
func TestSpillHandsOnWhatTheReadTook(t *testing.T) {
	s := newSpill(128, true)
	reads := 0
	ep := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("192.0.2.7:51820")}
	inner := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		reads++
		if len(bufs) != 128 {
			t.Fatalf("the kernel's side got %d slots, want 128", len(bufs))
		}
		for i := range bufs {
			sizes[i] = copy(bufs[i], datagram(i))
			eps[i] = ep
		}
		return len(bufs), nil
	}
	fn := s.receive(inner)
	var got [][]byte
	for call := 0; call < 3 && len(got) < 128; call++ {
		bufs := make([][]byte, deviceBatch)
		for i := range bufs {
			bufs[i] = make([]byte, 65535)
		}
		sizes, eps := make([]int, deviceBatch), make([]conn.Endpoint, deviceBatch)
		n, err := fn(bufs, sizes, eps)
		if err != nil || n != deviceBatch {
			t.Fatalf("call %d: %d packets (%v), want %d", call, n, err, deviceBatch)
		}
		for i := range n {
			if eps[i] != ep {
				t.Fatalf("packet %d without its endpoint", len(got))
			}
			got = append(got, bufs[i][:sizes[i]])
		}
	}
	if reads != 1 || len(got) != 128 {
		t.Fatalf("%d reads of the kernel handed %d packets, want 1 read, 128", reads, len(got))
	}
	for i, p := range got {
		if !bytes.Equal(p, datagram(i)) {
			t.Fatalf("packet %d changed after it was handed on: %d bytes starting %x", i, len(p), p[:min(8, len(p))])
		}
	}
}

// datagram i: 100 + i bytes, its number first.
func datagram(i int) []byte {
	p := bytes.Repeat([]byte{byte(i)}, 100+i)
	binary.BigEndian.PutUint32(p, uint32(i))
	return p
}

// TestTUNSuperpacketBeyondTheBatchArrivesWhole: the kernel hands the TUN
// one UDP superpacket of 100 segments (a sender's UDP_SEGMENT; the TUN
// takes it whole, as wireguard-go asks with USO); wireguard-go reads it as
// 100 packets, at most deviceBatch per read, in order and whole. Needs
// root: a TUN in a network namespace of its own.
func TestTUNSuperpacketBeyondTheBatchArrivesWhole(t *testing.T) {
	superpacketTest(t, func(d tun.Device) (tun.Device, func()) { return narrowed(d), nil })
}

// TestTUNGathersPacketsThatCameOneByOne: datagrams the TUN holds one by
// one (no superpacket) reach wireguard-go as one batch, not a read each
// (wireguard-go then sends them with one system call, not one apiece).
func TestTUNGathersPacketsThatCameOneByOne(t *testing.T) {
	const sent = 40
	pkts, most := readThroughTUN(t, sent, 400, false, func(d tun.Device) (tun.Device, func()) { return narrowed(d), nil })
	if len(pkts) != sent || most != sent {
		t.Fatalf("read %d datagrams, at most %d a read; want all %d in one read", len(pkts), most, sent)
	}
}

// TestGateShutHandsOnWhatTheLastReadBrought: an old agent that lets go of
// the TUN (Shut) just after a read that brought more than one batch
// still hands wireguard-go the rest of it (it sends them before it
// closes): they left the kernel's queue, so the successor will not read
// them.
func TestGateShutHandsOnWhatTheLastReadBrought(t *testing.T) {
	superpacketTest(t, func(d tun.Device) (tun.Device, func()) {
		g := newGatedTUN(d)
		g.Open()
		return g, g.Shut
	})
}

// superpacketTest sends a superpacket of 100 segments into a TUN read
// through wrap's device (after the read of the first batch, wrap's
// function runs) and wants them all, in order, whole, at most a batch a
// read.
func superpacketTest(t *testing.T, wrap func(tun.Device) (tun.Device, func())) {
	t.Helper()
	const segs = 100
	pkts, most := readThroughTUN(t, segs, 400, true, wrap)
	if len(pkts) != segs || most != deviceBatch {
		t.Fatalf("read %d packets, at most %d a read; want %d, %d a read (the superpacket's first)", len(pkts), most, segs, deviceBatch)
	}
}

// readThroughTUN runs throughTUN on a thread of its own (skipped without
// root), fails the test if it errs or hands nothing over in 20 s, and
// wants every packet it read whole and in the order sent; it returns them
// and the most packets one read handed.
func readThroughTUN(t *testing.T, segs, segSize int, gso bool, wrap func(tun.Device) (tun.Device, func())) ([][]byte, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a TUN in a network namespace of its own")
	}
	type result struct {
		pkts [][]byte
		most int // packets of the fullest read
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		r := result{}
		r.pkts, r.most, r.err = throughTUN(segs, segSize, gso, wrap)
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no packets from the TUN in 20 s")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	for i, p := range r.pkts {
		payload := p[28:] // IPv4 20 + UDP 8
		if len(payload) != segSize || payload[0] != byte(i) || payload[segSize-1] != byte(i) {
			t.Fatalf("packet %d: %d bytes of payload starting %x, want %d bytes of %x", i, len(payload), payload[:min(4, len(payload))], segSize, byte(i))
		}
	}
	return r.pkts, r.most
}

// throughTUN, on a locked thread: a new network namespace, a TUN with
// offloads (IPv6 off: nothing of the kernel's own), wrapped, and segs
// datagrams of segSize routed into it, by one UDP send of segs segments
// (gso) or by segs sends; returns what reads of the wrapped TUN hand
// over, and the most packets one read handed.
func throughTUN(segs, segSize int, gso bool, wrap func(tun.Device) (tun.Device, func())) (pkts [][]byte, most int, err error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, 0, err
	}
	dev, err := tun.CreateTUN("spill0", 1420)
	if err != nil {
		return nil, 0, err
	}
	defer dev.Close()
	if dev.BatchSize() <= deviceBatch {
		return nil, 0, os.ErrInvalid // no offloads: nothing to narrow
	}
	link, err := netlink.LinkByName("spill0")
	if err != nil {
		return nil, 0, err
	}
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/spill0/disable_ipv6", []byte("1"), 0o644); err != nil {
		return nil, 0, err
	}
	addr, _ := netlink.ParseAddr("10.99.0.1/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		return nil, 0, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, 0, err
	}
	nt, after := wrap(dev)
	if nt.BatchSize() != deviceBatch {
		return nil, 0, os.ErrInvalid
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(s)
	payload := make([]byte, segs*segSize)
	for i := range segs {
		for j := range segSize {
			payload[i*segSize+j] = byte(i)
		}
	}
	to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 99, 0, 2}}
	if gso {
		if err := unix.SetsockoptInt(s, unix.SOL_UDP, unix.UDP_SEGMENT, segSize); err != nil {
			return nil, 0, err
		}
		if err := unix.Sendto(s, payload, 0, to); err != nil {
			return nil, 0, err
		}
	}
	for i := 0; !gso && i < segs; i++ {
		if err := unix.Sendto(s, payload[i*segSize:(i+1)*segSize], 0, to); err != nil {
			return nil, 0, err
		}
	}
	const offset = 16
	bufs := make([][]byte, deviceBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, deviceBatch)
	for reads := 0; len(pkts) < segs && reads < 20; reads++ {
		n, err := nt.Read(bufs, sizes, offset)
		if err != nil {
			return nil, 0, err
		}
		most = max(most, n)
		if n == deviceBatch && after != nil {
			after()
			after = nil
		}
		for i := range n {
			p := bufs[i][offset : offset+sizes[i]]
			if p[0]>>4 == 4 && p[9] == unix.IPPROTO_UDP {
				pkts = append(pkts, bytes.Clone(p))
			}
		}
	}
	return pkts, most, nil
}
