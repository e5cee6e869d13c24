package mesh

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// TestInjectedPacketWakesAWaitingRead: with on-demand peers, an injected
// packet (a held initiation) reaches a receive function already waiting in
// the kernel for the socket, at once and without the bell that woke it, and
// the bind adds no receive function of its own (whose batch of buffers
// would cost 8 MiB).
func TestInjectedPacketWakesAWaitingRead(t *testing.T) {
	b := newPathBind(nil)
	b.injecting = true
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	plain := conn.NewStdNetBind()
	want, _, err := plain.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	_ = plain.Close()
	if len(fns) != len(want) {
		t.Fatalf("with on-demand peers the bind has %d receive functions, want the socket's %d", len(fns), len(want))
	}

	type read struct {
		pkts [][]byte
		err  error
	}
	got := make(chan read, 1)
	go func() {
		bufs, sizes, eps := batch(b)
		n, err := fns[0](bufs, sizes, eps)
		r := read{err: err}
		for i := range n {
			r.pkts = append(r.pkts, bufs[i][:sizes[i]])
		}
		got <- r
	}()
	time.Sleep(100 * time.Millisecond) // the read waits in the kernel
	pkt := bytes.Repeat([]byte{1}, 148)
	ep, err := b.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 51820).String())
	if err != nil {
		t.Fatal(err)
	}
	b.inject(pkt, ep)
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("the waiting read failed: %v", r.err)
		}
		if len(r.pkts) != 1 || !bytes.Equal(r.pkts[0], pkt) {
			t.Fatalf("the waiting read returned %d packets %x, want only the injected one", len(r.pkts), r.pkts)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("the injected packet did not reach the read waiting on port %d", port)
	}

	// What the socket receives still arrives, and a bell no injection
	// rang (another socket's) is not taken for this one's.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stranger := append([]byte{0}, bytes.Repeat([]byte{7}, 15)...)
	if _, err := c.Write(stranger); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := batch(b)
	n, err := fns[0](bufs, sizes, eps)
	if err != nil || n != 1 || !bytes.Equal(bufs[0][:sizes[0]], stranger) {
		t.Fatalf("a datagram from a stranger: read %d packets (%v), want it", n, err)
	}
}

// batch is what wireguard-go hands a receive function: as many buffers as
// the bind's batch (the socket's reads with GRO need them all).
func batch(b conn.Bind) ([][]byte, []int, []conn.Endpoint) {
	bufs := make([][]byte, b.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	return bufs, make([]int, len(bufs)), make([]conn.Endpoint, len(bufs))
}
