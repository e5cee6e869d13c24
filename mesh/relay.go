package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// The relay lets a successor's device shake hands with every peer while
// the old agent still runs the data plane (package handover), so that the
// sessions are there when it takes over. Only the old agent holds the
// WireGuard port then: the successor sends through it, and it passes the
// successor's packets on. Which packets are the successor's is read from
// WireGuard's own headers: the receiver index of a handshake response,
// cookie reply or transport packet is one the successor chose (it sent it
// in its initiation or response), and every initiation from a peer goes
// to the successor, whose sessions are the ones that will last. The old
// device sends no initiation of its own meanwhile: its sessions carry its
// traffic until it lets go (they are valid for three minutes; an overlap
// lasts a second or two).
//
// A relay message is one SOCK_SEQPACKET datagram: the endpoint (16-byte
// address, 2-byte port, big-endian) and the WireGuard packet.

const relayHeader = 18

// relayIndices bounds the successor indices the old agent remembers: two a
// peer's handshake at most; beyond this, indices are forgotten oldest
// first-come (the map is cleared).
const relayIndices = 1 << 16

// relayWriteTimeout bounds a write to a successor that stopped reading:
// the old agent's receive path must never wait on it long.
const relayWriteTimeout = 100 * time.Millisecond

// WireGuard message types (the first byte; the next three are zero).
const (
	wgInitiation = 1
	wgResponse   = 2
	wgCookie     = 3
	wgTransport  = 4
)

// receiverIndex is the index a packet is addressed to, if it has one.
func receiverIndex(p []byte) (uint32, bool) {
	switch {
	case len(p) >= 12 && p[0] == wgResponse:
		return binary.LittleEndian.Uint32(p[8:12]), true
	case len(p) >= 8 && (p[0] == wgCookie || p[0] == wgTransport):
		return binary.LittleEndian.Uint32(p[4:8]), true
	}
	return 0, false
}

// senderIndex is the index a handshake message's sender chose.
func senderIndex(p []byte) (uint32, bool) {
	if len(p) >= 8 && (p[0] == wgInitiation || p[0] == wgResponse) {
		return binary.LittleEndian.Uint32(p[4:8]), true
	}
	return 0, false
}

func putRelay(buf []byte, ep netip.AddrPort, p []byte) []byte {
	a := ep.Addr().As16()
	buf = append(buf[:0], a[:]...)
	buf = binary.BigEndian.AppendUint16(buf, ep.Port())
	return append(buf, p...)
}

func parseRelay(m []byte) (netip.AddrPort, []byte, bool) {
	if len(m) < relayHeader {
		return netip.AddrPort{}, nil, false
	}
	addr := netip.AddrFrom16([16]byte(m[:16])).Unmap()
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(m[16:18])), m[relayHeader:], true
}

func endpointAddr(ep conn.Endpoint) (netip.AddrPort, error) {
	if s, ok := ep.(*conn.StdNetEndpoint); ok {
		return s.AddrPort, nil
	}
	return netip.ParseAddrPort(ep.DstToString())
}

// relayPair is a connected SOCK_SEQPACKET pair: one end for this process,
// the other as a file to hand over.
func relayPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("relay socket pair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "relay"), os.NewFile(uintptr(fds[1]), "relay")
	c, err := relayConn(mine)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// relayConn makes a connection of a relay end; f is closed.
func relayConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("relay socket: not a Unix socket")
	}
	return uc, nil
}

// relayBound is the message a successor sends once its own socket is on
// the port (handover version 2): a header with no packet. The old agent
// then closes its socket, and the relay.
var relayBound = make([]byte, relayHeader)

// outRelay is the old agent's side: what it passes to the successor.
type outRelay struct {
	c     *net.UnixConn
	send  func([]byte, netip.AddrPort) error // on the old agent's socket
	bound chan struct{}                      // closed when the successor said relayBound, or went
	said  atomic.Bool                        // it said relayBound
	once  sync.Once

	mu       sync.Mutex
	indices  map[uint32]bool // the successor's
	lastInit time.Time       // its last initiation
	buf      []byte
	closed   atomic.Bool

	// What went through, for the log at the end (issue 30's open question:
	// where a handover loses packets).
	passed, lost, sent atomic.Int64
}

// theirs reports whether p is the successor's: a peer's initiation, or a
// packet addressed to an index the successor chose.
func (r *outRelay) theirs(p []byte) bool {
	if len(p) > 0 && p[0] == wgInitiation {
		return true
	}
	i, ok := receiverIndex(p)
	if !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.indices[i]
}

// pass gives the successor one packet that arrived for it.
func (r *outRelay) pass(p []byte, ep conn.Endpoint) {
	addr, err := endpointAddr(ep)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.buf = putRelay(r.buf, addr, p)
	_ = r.c.SetWriteDeadline(time.Now().Add(relayWriteTimeout))
	_, err = r.c.Write(r.buf)
	r.mu.Unlock()
	if err != nil {
		r.lost.Add(1)
		r.close() // the successor stopped reading: the old agent goes on alone
		return
	}
	r.passed.Add(1)
}

// serve sends the successor's packets from the old agent's socket until
// the successor closes its end.
func (r *outRelay) serve() {
	defer func() {
		// A successor gone, or one that closed its end without saying
		// bound (it binds once the port is free): the old agent lets go
		// of the port now.
		r.once.Do(func() { close(r.bound) })
		r.close()
	}()
	m := make([]byte, relayHeader+65535)
	for {
		n, err := r.c.Read(m)
		if err != nil {
			return
		}
		ep, p, ok := parseRelay(m[:n])
		if !ok {
			continue
		}
		if len(p) == 0 {
			r.said.Store(true)
			r.once.Do(func() { close(r.bound) })
			continue
		}
		if i, ok := senderIndex(p); ok {
			r.mu.Lock()
			if len(r.indices) >= relayIndices {
				clear(r.indices)
			}
			r.indices[i] = true
			if p[0] == wgInitiation {
				r.lastInit = time.Now()
			}
			r.mu.Unlock()
		}
		if r.send(p, ep) == nil {
			r.sent.Add(1)
		}
	}
}

func (r *outRelay) close() {
	if r.closed.CompareAndSwap(false, true) {
		r.c.Close()
	}
}

// inRelay is the successor's side: its device's socket until it takes
// over.
type inRelay struct {
	c      *net.UnixConn
	bind   conn.Bind // to make endpoints
	rbuf   []byte    // receive's (one goroutine)
	mu     sync.Mutex
	wbuf   []byte
	closed atomic.Bool
	ended  atomic.Bool // the old agent closed its end
}

// sayBound tells the old agent this device's socket is on the port.
func (r *inRelay) sayBound() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.c.Write(relayBound)
	return err
}

func newInRelay(f *os.File, bind conn.Bind) (*inRelay, error) {
	c, err := relayConn(f)
	if err != nil {
		return nil, err
	}
	return &inRelay{c: c, bind: bind, rbuf: make([]byte, relayHeader+65535)}, nil
}

func (r *inRelay) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	m := r.rbuf
	for {
		n, err := r.c.Read(m)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				r.ended.Store(true) // the old agent closed it
			}
			return 0, net.ErrClosed
		}
		ap, p, ok := parseRelay(m[:n])
		if !ok || len(p) > len(bufs[0]) {
			continue
		}
		ep, err := r.bind.ParseEndpoint(ap.String())
		if err != nil {
			continue
		}
		sizes[0] = copy(bufs[0], p)
		eps[0] = ep
		return 1, nil
	}
}

func (r *inRelay) send(bufs [][]byte, ep conn.Endpoint) error {
	addr, err := endpointAddr(ep)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range bufs {
		r.wbuf = putRelay(r.wbuf, addr, b)
		if _, err := r.c.Write(r.wbuf); err != nil {
			if errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
				// The old agent let go (take): lost like any packet in
				// flight at that instant; the device binds the port next.
				return nil
			}
			return err
		}
	}
	return nil
}

func (r *inRelay) close() {
	if r.closed.CompareAndSwap(false, true) {
		r.c.Close()
	}
}
