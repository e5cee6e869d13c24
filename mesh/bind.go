package mesh

import (
	"errors"
	"net/netip"
	"sync"
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

	mu    sync.Mutex
	small map[netip.Addr]time.Time // endpoint -> unsegmented until
}

// unsegmentedFor is how long sends to an endpoint stay unsegmented after a
// batch was too big; then segmentation is tried again (the route may have
// changed).
const unsegmentedFor = 5 * time.Minute

func newPathBind(tooBig func(netip.Addr)) *pathBind {
	return &pathBind{Bind: conn.NewStdNetBind(), tooBig: tooBig, small: map[netip.Addr]time.Time{}}
}

func (b *pathBind) Send(bufs [][]byte, ep conn.Endpoint) error {
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
