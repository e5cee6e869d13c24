package mesh

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// gatedTUN holds a device's reads of the TUN: a successor's wait until it
// takes over (the old agent still reads), and an old agent's stop when it
// lets go (Shut; the successor reads from then on). Writes always go
// through: packets the successor's sessions carry before take, and those
// the old agent decrypted just before it let go.
//
// With on-demand peers it also holds the packets for resting peers (hold)
// and hands in those that waited once their peer is back (deliver): a
// read waiting in the kernel is cut short by a read deadline on the TUN's
// file, so they need not wait for the next packet.
type gatedTUN struct {
	tun.Device
	native    *tun.NativeTun // the TUN under the batch (spill.go); nil: none
	file      *os.File       // the TUN's, for read deadlines; nil: none
	hold      atomic.Pointer[tunHold]
	readyMu   sync.Mutex
	ready     [][]byte
	open      chan struct{}
	shut      chan struct{}
	closed    chan struct{}
	openOnce  sync.Once
	shutOnce  sync.Once
	closeOnce sync.Once
}

func newGatedTUN(t tun.Device) *gatedTUN {
	g := &gatedTUN{Device: narrowed(t), open: make(chan struct{}), shut: make(chan struct{}), closed: make(chan struct{})}
	if nt, ok := t.(*tun.NativeTun); ok {
		g.native, g.file = nt, nt.File()
	}
	return g
}

func (g *gatedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-g.open:
	case <-g.closed:
		return 0, os.ErrClosed
	}
	for {
		if !g.spilled() { // what the last read brought beyond the batch goes first, shut or not
			select {
			case <-g.shut:
				<-g.closed // a read already waiting in the kernel returns its batch
				return 0, os.ErrClosed
			default:
			}
		}
		if g.hold.Load() != nil { // nothing is ever ready without on-demand peers
			if n := g.takeReady(bufs, sizes, offset); n > 0 {
				return n, nil
			}
		}
		n, err := g.Device.Read(bufs, sizes, offset)
		if err != nil {
			if g.file != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				_ = g.file.SetReadDeadline(time.Time{}) // deliver's: take what is ready
				continue
			}
			return n, err
		}
		// Loaded after the read, which may have waited since before
		// on-demand peers were turned on (a successor's reader).
		if h := g.hold.Load(); h != nil {
			if n = h.filter(bufs, sizes, offset, n); n == 0 {
				continue
			}
		}
		return n, nil
	}
}

// spilled: packets of the last read wait beyond wireguard-go's batch
// (spill.go); the next read takes them without reading the TUN.
func (g *gatedTUN) spilled() bool {
	sp, ok := g.Device.(*spillTUN)
	return ok && sp.s.pending()
}

// deliver hands packets that waited for their peer to the device's next
// read, cutting short one waiting in the kernel.
func (g *gatedTUN) deliver(pkts [][]byte) {
	g.readyMu.Lock()
	g.ready = append(g.ready, pkts...)
	g.readyMu.Unlock()
	if g.file != nil {
		_ = g.file.SetReadDeadline(time.Now()) // without one, they go with the next read
	}
}

// takeReady moves waiting packets into bufs.
func (g *gatedTUN) takeReady(bufs [][]byte, sizes []int, offset int) int {
	g.readyMu.Lock()
	defer g.readyMu.Unlock()
	n := 0
	for len(g.ready) > 0 && n < len(bufs) {
		p := g.ready[0]
		g.ready = g.ready[1:]
		if len(p) > len(bufs[n])-offset {
			continue // cannot happen: it was read into a buffer of this size
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
	}
	if len(g.ready) == 0 {
		g.ready = nil
	}
	return n
}

func (g *gatedTUN) Open() { g.openOnce.Do(func() { close(g.open) }) }

// Shut stops reading for good.
func (g *gatedTUN) Shut() { g.shutOnce.Do(func() { close(g.shut) }) }

func (g *gatedTUN) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	return g.Device.Close()
}
