package mesh

import (
	"syscall"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// deviceBatch is the batch weft gives wireguard-go: the most packets one
// read of the socket or the TUN hands it. wireguard-go keeps a buffer of
// 64 KiB on its heap for every slot of every reader's batch — two socket
// readers (IPv4, IPv6) and the TUN's — whether or not a packet ever
// lands there: at the socket's and TUN's 128 that is 24 MiB of live heap
// on an idle agent, and the garbage collector lets the heap grow by half
// of it again before it collects (GOGC 50). 64 keeps what a batch does
// for throughput: a TCP superpacket the TUN hands over (64 KiB, 48
// segments at this MTU) fits one batch, one UDP send segments at most 64
// datagrams, and one TUN write coalesces at most 64 KiB. What the kernel
// hands over beyond 64 in one read (UDP GRO reads two coalesced
// messages; a TCP superpacket of small segments) waits in spill slots
// outside the Go heap and goes with the next call.
const deviceBatch = 64

// spillSlot is a spill slot's size: any datagram, any packet the TUN
// hands over, at wireguard-go's offset.
const spillSlot = 64 << 10

// spill is a reader's batch as wide as the kernel's side wants (the
// bind's and the TUN's 128) in front of wireguard-go's narrower one: for
// each read its first slots are the caller's buffers, so what fits lands
// there without a copy, and the rest are slots of its own. One per
// reader; a reader is one goroutine, so no lock.
type spill struct {
	own     [][]byte // width slots of its own
	bufs    [][]byte // what a read gets: the caller's buffers, then own
	sizes   []int
	eps     []conn.Endpoint // the bind's
	next, n int             // bufs[next:n] wait for the next call
}

// newSpill makes a batch of width slots. Its own slots are one anonymous
// mapping, not Go heap: the kernel backs a page only once a packet was
// written there, and the garbage collector's goal does not count them.
// It is kept for the process (a reader's spill is reused when its bind
// opens again).
func newSpill(width int, withEndpoints bool) *spill {
	s := &spill{own: make([][]byte, width), bufs: make([][]byte, width), sizes: make([]int, width)}
	if withEndpoints {
		s.eps = make([]conn.Endpoint, width)
	}
	mem, err := unix.Mmap(-1, 0, width*spillSlot, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		mem = make([]byte, width*spillSlot)
	}
	for i := range width {
		s.own[i] = mem[i*spillSlot : (i+1)*spillSlot : (i+1)*spillSlot]
	}
	copy(s.bufs, s.own)
	return s
}

// pending: packets of the last read still wait.
func (s *spill) pending() bool { return s.next < s.n }

// arm puts the caller's buffers in front for a read.
func (s *spill) arm(bufs [][]byte) {
	copy(s.bufs, bufs)
}

// took records that a read into the armed batch filled s.bufs[:n], gives
// the front slots back to the spill (the caller's buffers are the
// caller's again) and returns how many packets are in the caller's
// len(bufs) buffers; the rest, in slots of its own, wait.
func (s *spill) took(n int, bufs [][]byte) int {
	m := min(n, len(bufs))
	copy(s.bufs, s.own[:len(bufs)])
	if n > m {
		s.next, s.n = m, n
	}
	return m
}

// drain copies waiting packets into the caller's buffers, each at offset,
// and returns how many.
func (s *spill) drain(bufs [][]byte, sizes []int, eps []conn.Endpoint, offset int) int {
	k := 0
	for ; k < len(bufs) && s.next < s.n; k++ {
		sizes[k] = copy(bufs[k][offset:], s.bufs[s.next][offset:offset+s.sizes[s.next]])
		if eps != nil {
			eps[k] = s.eps[s.next]
			s.eps[s.next] = nil
		}
		s.next++
	}
	return k
}

// receive gives a bind's receive function the spill's width, and its
// caller at most len(bufs) packets per call.
func (s *spill) receive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if s.pending() {
			return s.drain(bufs, sizes, eps, 0), nil
		}
		s.arm(bufs)
		n, err := fn(s.bufs, s.sizes, s.eps)
		m := s.took(n, bufs)
		copy(sizes, s.sizes[:m])
		copy(eps, s.eps[:m])
		clear(s.eps[:m])
		return m, err
	}
}

// spillTUN reads the TUN a spill at a time and hands wireguard-go at
// most deviceBatch packets per read.
//
// It also gathers: one read of the TUN hands over one packet, or one
// superpacket's segments, so packets that came one by one (a UDP flow, a
// flow the kernel did not segment) would each make a batch of one. For
// each batch wireguard-go makes a system call to send (a segmented send
// when the batch is a peer's packets of one size), and under a UDP flow
// that call, not the sealing, is what bounds the rate: the TUN's queue
// overflowed and a pod's 500 Mbit/s lost 30-50 % where wireguard-go's
// own node-to-node runs lost 1 %. So after a read that brought fewer
// than a batch, the TUN is read again for as long as it has a packet
// waiting, up to a batch; it never waits for one.
type spillTUN struct {
	tun.Device
	s     *spill
	rc    syscall.RawConn // the TUN's file, to ask whether a packet waits; nil: never gathers
	poll  func(fd uintptr)
	fds   []unix.PollFd
	ready bool // poll's answer
}

// narrowed is t with a batch of at most deviceBatch. Its spill is a
// batch wider than t's, so a read while gathering still has t's whole
// batch of slots for a superpacket.
func narrowed(t tun.Device) tun.Device {
	if t.BatchSize() <= deviceBatch {
		return t
	}
	st := &spillTUN{Device: t, s: newSpill(t.BatchSize()+deviceBatch, false), fds: make([]unix.PollFd, 1)}
	if nt, ok := t.(*tun.NativeTun); ok {
		if rc, err := nt.File().SyscallConn(); err == nil {
			st.rc = rc
		}
	}
	st.poll = func(fd uintptr) {
		st.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		n, err := unix.Poll(st.fds, 0)
		st.ready = err == nil && n > 0 && st.fds[0].Revents&unix.POLLIN != 0
	}
	return st
}

func (t *spillTUN) BatchSize() int { return deviceBatch }

func (t *spillTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.s.pending() {
		return t.s.drain(bufs, sizes, nil, offset), nil
	}
	t.s.arm(bufs)
	n, err := t.Device.Read(t.s.bufs, t.s.sizes, offset)
	n = max(n, 0)
	// Each read while gathering has at least t's batch of slots left:
	// n < deviceBatch and the spill is t's batch + deviceBatch wide.
	for err == nil && n > 0 && n < min(len(bufs), deviceBatch) && t.waiting() {
		m, rerr := t.Device.Read(t.s.bufs[n:], t.s.sizes[n:], offset)
		n += max(m, 0)
		if rerr != nil {
			// What was gathered goes now. A closed TUN or a read
			// deadline (deliver's) says so again on the next read; a
			// superpacket of more segments than slots is lost, as
			// wireguard-go loses it (ErrTooManySegments).
			break
		}
	}
	m := t.s.took(n, bufs)
	copy(sizes, t.s.sizes[:m])
	return m, err
}

// waiting: the TUN has a packet to read now.
func (t *spillTUN) waiting() bool {
	if t.rc == nil {
		return false
	}
	t.ready = false
	if t.rc.Control(t.poll) != nil {
		return false
	}
	return t.ready
}
