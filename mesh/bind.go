package mesh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// pathBind is wireguard-go's standard bind with a way around a path MTU
// smaller than the tunnel assumes. wireguard-go turns UDP segmentation
// (GSO) off only on EIO; a segment over the kernel's path MTU fails the
// whole batch with EMSGSIZE, and every large packet to that
// peer is lost. Here such a batch is sent again one datagram at a time,
// which the kernel fragments to the path MTU, and later batches to that
// endpoint go unsegmented for a while; tooBig tells the agent, which lowers
// the peer's tunnel MTU so that, for IPv4, nothing needs fragmenting.
type pathBind struct {
	conn.Bind
	tooBig func(netip.Addr)

	// Handover (relay.go): out while a successor shakes hands through
	// this device; in while this device is the successor.
	out atomic.Pointer[outRelay]
	in  atomic.Pointer[inRelay]
	// bound: a successor has its own socket on the port beside the old
	// agent's (Take with share): it sends there and receives from both
	// until the old agent closes the relay.
	bound atomic.Bool

	mu    sync.Mutex
	small map[netip.Addr]time.Time // endpoint -> unsegmented until

	// On-demand peers (ondemand.go): initiations from resting peers are
	// taken out of the receive path and come back through injected once
	// their peer is on the device.
	wakeOnInit atomic.Pointer[onDemand]
	injected   atomic.Pointer[injector]
	injecting  bool // DeviceConfig.OnDemand: Open adds the injector

	// spills: the socket's receive functions' batches, by position
	// (spill.go), made at the first Open and kept.
	spills []*spill
}

// BatchSize is wireguard-go's batch (spill.go); the socket's reads keep
// the standard bind's.
func (b *pathBind) BatchSize() int { return min(b.Bind.BatchSize(), deviceBatch) }

// injector hands wireguard-go packets as if the socket had received them
// (inject). When the bind has its own socket it rings a bell: a datagram
// to that socket from loopback, which wakes a receive function waiting in
// the kernel; the socket's receive functions (ringing) drop the bell and
// take what was injected. Without a socket of its own (a successor
// reading only the relay) it is an extra receive function, and
// wireguard-go gives each receive function a batch of 64 KiB buffers
// (8 MiB of heap).
type injector struct {
	c    chan injectedPacket
	done chan struct{}
	once sync.Once
	bell *net.UDPConn // nil: an extra receive function
	// token is the bell's datagram: random, its first byte 0, which no
	// WireGuard message starts with (a bell that reaches another socket
	// on the port, an old agent's, is dropped there as junk).
	token [16]byte
}

type injectedPacket struct {
	pkt []byte
	ep  conn.Endpoint
}

func (j *injector) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	select {
	case <-j.done:
		return 0, net.ErrClosed
	case p := <-j.c:
		if len(p.pkt) > len(bufs[0]) {
			return 0, nil
		}
		sizes[0] = copy(bufs[0], p.pkt)
		eps[0] = p.ep
		return 1, nil
	}
}

// take moves what was injected into bufs from index from on, without
// waiting, and returns how many it moved.
func (j *injector) take(bufs [][]byte, sizes []int, eps []conn.Endpoint, from int) int {
	n := from
	for n < len(bufs) {
		select {
		case p := <-j.c:
			if len(p.pkt) > len(bufs[n]) {
				continue
			}
			sizes[n] = copy(bufs[n], p.pkt)
			eps[n] = p.ep
			n++
		default:
			return n - from
		}
	}
	return n - from
}

// dropBells removes the bell's datagrams from bufs[:n] and returns how
// many packets remain.
func (j *injector) dropBells(bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	return keepUnless(bufs, sizes, eps, n, func(p []byte, _ conn.Endpoint) bool { return bytes.Equal(p, j.token[:]) })
}

func (j *injector) close() {
	j.once.Do(func() {
		close(j.done)
		if j.bell != nil {
			_ = j.bell.Close()
		}
	})
}

// inject hands pkt, received from ep, to wireguard-go (dropped when the
// bind is closed or the queue is full: the sender tries again).
func (b *pathBind) inject(pkt []byte, ep conn.Endpoint) {
	j := b.injected.Load()
	if j == nil {
		return
	}
	select {
	case j.c <- injectedPacket{pkt: pkt, ep: ep}:
	default:
	}
	if j.bell != nil {
		_, _ = j.bell.Write(j.token[:]) // lost (a full socket buffer): the next read takes it
	}
}

// withInjector starts a fresh injector for an Open: with a bell on the
// socket bound to port when onSocket, else as an extra receive function.
// Only with on-demand peers.
func (b *pathBind) withInjector(fns []conn.ReceiveFunc, port uint16, onSocket bool) []conn.ReceiveFunc {
	if !b.injecting {
		return fns
	}
	j := &injector{c: make(chan injectedPacket, heldInits), done: make(chan struct{})}
	if onSocket {
		j.bell = dialBell(port)
		_, _ = rand.Read(j.token[1:])
	}
	if old := b.injected.Swap(j); old != nil {
		old.close()
	}
	if j.bell != nil {
		return fns
	}
	return append(fns, j.receive)
}

// dialBell connects a UDP socket to this host's port on loopback (IPv4,
// else IPv6); nil when neither is there.
func dialBell(port uint16) *net.UDPConn {
	for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()} {
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, port))); err == nil {
			return c
		}
	}
	return nil
}

// ringing wraps a receive function of the socket (or of the relay beside
// it): what was injected goes first, the bell's datagrams are dropped,
// and what was injected while the read waited comes after what it read.
func (b *pathBind) ringing(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		j := b.injected.Load()
		if j == nil || j.bell == nil {
			return fn(bufs, sizes, eps)
		}
		if n := j.take(bufs, sizes, eps, 0); n > 0 {
			return n, nil
		}
		n, err := fn(bufs, sizes, eps)
		if n > 0 {
			n = j.dropBells(bufs, sizes, eps, n)
		}
		if err == nil {
			n += j.take(bufs, sizes, eps, n)
		}
		return n, err
	}
}

// unsegmentedFor is how long sends to an endpoint stay unsegmented after a
// batch was too big; then segmentation is tried again (the route may have
// changed).
const unsegmentedFor = 5 * time.Minute

func newPathBind(tooBig func(netip.Addr)) *pathBind {
	return &pathBind{Bind: conn.NewStdNetBind(), tooBig: tooBig, small: map[netip.Addr]time.Time{}}
}

// Open opens the socket, or while this device is a successor, the relay.
func (b *pathBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	r := b.in.Load()
	if r != nil {
		_ = r.c.SetReadDeadline(time.Time{})
		if !b.bound.Load() {
			return b.withInjector([]conn.ReceiveFunc{r.receive}, port, false), port, nil
		}
	}
	fns, port, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		if w := b.Bind.BatchSize(); w > deviceBatch {
			if i == len(b.spills) {
				b.spills = append(b.spills, newSpill(w, true))
			}
			fn = b.spills[i].receive(fn)
		}
		fns[i] = b.ringing(b.relaying(fn))
	}
	if r != nil {
		fns = append(fns, b.ringing(r.receive))
	}
	return b.withInjector(fns, port, true), port, nil
}

// Close closes the socket; a successor's relay stops being read (the
// device closes and opens its bind when it comes up).
func (b *pathBind) Close() error {
	if r := b.in.Load(); r != nil {
		_ = r.c.SetReadDeadline(time.Now())
	}
	if j := b.injected.Swap(nil); j != nil {
		j.close()
	}
	return b.Bind.Close()
}

// relaying passes the successor's packets on while a relay is out; the
// rest reach this device.
func (b *pathBind) relaying(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		if o := b.wakeOnInit.Load(); o != nil && n > 0 && o.table.Load() != nil {
			n = takeInitiations(o, bufs, sizes, eps, n)
		}
		r := b.out.Load()
		if r == nil || n == 0 {
			return n, err
		}
		if r.closed.Load() {
			b.out.CompareAndSwap(r, nil)
			return n, err
		}
		return keepUnless(bufs, sizes, eps, n, func(p []byte, ep conn.Endpoint) bool {
			if r.theirs(p) {
				r.pass(p, ep)
				return true
			}
			return false
		}), err
	}
}

// takeInitiations removes from bufs[:n] the initiations of resting peers
// (held for their wake) and returns how many packets remain.
func takeInitiations(o *onDemand, bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	return keepUnless(bufs, sizes, eps, n, o.takeInitiation)
}

// keepUnless removes from bufs[:n] the packets for which taken reports
// true (it keeps what it needs of them first), moves the rest forward in
// order, and returns how many remain.
func keepUnless(bufs [][]byte, sizes []int, eps []conn.Endpoint, n int, taken func(p []byte, ep conn.Endpoint) bool) int {
	k := 0
	for i := range n {
		p := bufs[i][:sizes[i]]
		if taken(p, eps[i]) {
			continue
		}
		if k != i {
			sizes[k] = copy(bufs[k], p)
			eps[k] = eps[i]
		}
		k++
	}
	return k
}

func (b *pathBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if r := b.in.Load(); r != nil && !b.bound.Load() {
		return r.send(bufs, ep)
	}
	if r := b.out.Load(); r != nil && !r.closed.Load() && len(bufs) == 1 && len(bufs[0]) > 0 && bufs[0][0] == wgInitiation {
		return nil // no new session of the old device while a successor makes its own
	}
	dst := ep.DstIP()
	if len(bufs) > 1 && b.isSmall(dst) {
		return b.sendEach(bufs, ep)
	}
	err := b.Bind.Send(bufs, ep)
	if err == nil || !overPathMTU(err) {
		return err
	}
	b.mu.Lock()
	if len(b.small) > 4096 {
		clear(b.small) // bounded: endpoints come from peers
	}
	b.small[dst] = time.Now().Add(unsegmentedFor)
	b.mu.Unlock()
	if b.tooBig != nil {
		b.tooBig(dst)
	}
	return b.sendEach(bufs, ep)
}

func (b *pathBind) isSmall(dst netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.small[dst]
	if ok && time.Now().After(until) {
		delete(b.small, dst)
		return false
	}
	return ok
}

// sendEach sends bufs one datagram per call: no segmentation, so the
// kernel fragments what is over the path MTU.
func (b *pathBind) sendEach(bufs [][]byte, ep conn.Endpoint) error {
	var first error
	for i := range bufs {
		if err := b.Bind.Send(bufs[i:i+1], ep); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// overPathMTU: only EMSGSIZE. EINVAL also comes from a stale sticky source
// address, which wireguard-go clears itself; taking it for a small path
// would send a fast peer one datagram per call for minutes.
func overPathMTU(err error) bool {
	return errors.Is(err, syscall.EMSGSIZE)
}
