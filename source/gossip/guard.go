package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weftnet/weft/internal/connlimit"
)

// Bounds on what one gossip stream may cost. memberlist reads up to 20 MiB
// of a TCP stream into memory before it checks the key, and accepts streams
// without limit; the gossip port listens on the node address, which any
// host-network process and (unless filtered) any pod can reach. weft's own
// push/pull state is about 600 bytes a member, so 2 MiB holds a 3000-node
// cluster's; the stream count and per-source share bound the total.
const (
	maxStreamBytes      = 2 << 20
	maxStreams          = 16
	maxStreamsPerSource = 2
)

// errStreamTooLarge ends a stream that sends more than maxStreamBytes.
var errStreamTooLarge = errors.New("gossip stream over the size limit")

// guardedTransport is memberlist's NetTransport with incoming streams
// bounded: at most maxStreams open, maxStreamsPerSource from one address,
// each readable up to maxStreamBytes. A stream over a limit is closed
// before memberlist reads a byte of it, and counted.
type guardedTransport struct {
	*memberlist.NetTransport
	streams chan net.Conn
	refused func(reason string)
	stop    chan struct{}
	limit   *connlimit.Limiter

	dials     context.Context // ends when the source stops: dials in flight give up
	stopDials context.CancelFunc
}

func newGuardedTransport(bind netip.Addr, port int, logger *memberlistLogger, refused func(string)) (*guardedTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bind.String()}, BindPort: port, Logger: logger.std(),
	})
	if err != nil {
		return nil, err
	}
	t := &guardedTransport{NetTransport: nt, streams: make(chan net.Conn), refused: refused,
		stop: make(chan struct{}), limit: connlimit.New(maxStreamsPerSource, maxStreams)}
	t.dials, t.stopDials = context.WithCancel(context.Background())
	go t.admit()
	return t, nil
}

// StreamCh is what memberlist reads incoming streams from.
func (t *guardedTransport) StreamCh() <-chan net.Conn { return t.streams }

// DialAddressTimeout is NetTransport's dial, given up when the source
// stops: a join to seeds that do not answer (a Node without an agent, an
// address that drops SYNs) would otherwise hold the agent's shutdown for
// memberlist's TCP timeout, 10 s per round of seeds.
func (t *guardedTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(t.dials, "tcp", a.Addr)
}

// DialTimeout: see DialAddressTimeout.
func (t *guardedTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// Shutdown stops admitting streams and closes the listeners.
func (t *guardedTransport) Shutdown() error {
	t.stopDials()
	close(t.stop)
	return t.NetTransport.Shutdown()
}

func (t *guardedTransport) admit() {
	for {
		var c net.Conn
		select {
		case <-t.stop:
			return
		case c = <-t.NetTransport.StreamCh():
		}
		src := connlimit.Source(c)
		if why := t.limit.Take(src); why != "" {
			t.refused(map[string]string{connlimit.Total: "streams", connlimit.PerSource: "streams-per-source"}[why])
			_ = c.Close()
			continue
		}
		g := &guardedConn{Conn: c, left: maxStreamBytes}
		g.release = func() { t.limit.Give(src) }
		select {
		case t.streams <- g:
		case <-t.stop:
			_ = g.Close()
			return
		}
	}
}

// guardedConn fails reads past its budget and frees its slot once closed.
type guardedConn struct {
	net.Conn
	left    int64
	once    sync.Once
	release func()
}

func (g *guardedConn) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, fmt.Errorf("%w (%d bytes)", errStreamTooLarge, maxStreamBytes)
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.Conn.Read(p)
	g.left -= int64(n)
	return n, err
}

func (g *guardedConn) Close() error {
	g.once.Do(g.release)
	return g.Conn.Close()
}
