// Package connlimit bounds the connections a server holds open, per source
// address and in all: one limiter for every port a stranger can reach (the
// HTTP API, the gossip streams, the key exchange). A connection over a
// bound is closed before the server reads a byte of it.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// The reasons Take refuses.
const (
	PerSource = "per-source" // the source holds PerSource connections already
	Total     = "total"      // the server holds Total connections already
)

// Limiter counts open connections by source address.
type Limiter struct {
	perSource, max int

	mu    sync.Mutex
	open  map[netip.Addr]int
	total int
}

// New is a limiter of perSource connections from one address and max in
// all (0: no bound in all).
func New(perSource, max int) *Limiter {
	return &Limiter{perSource: perSource, max: max, open: map[netip.Addr]int{}}
}

// Take holds a connection from src; it reports "" or why it cannot
// (PerSource, Total), and then holds nothing.
func (l *Limiter) Take(src netip.Addr) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return Total
	case l.open[src] >= l.perSource:
		return PerSource
	}
	l.total++
	l.open[src]++
	return ""
}

// Give releases a connection Take held.
func (l *Limiter) Give(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src) // the map holds only sources with connections open
	}
}

// Sources is how many addresses hold connections now.
func (l *Limiter) Sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// Source is a connection's remote IP address (IPv4-mapped unmapped);
// invalid for a connection that is not TCP.
func Source(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// Listen wraps ln: Accept closes each connection over l's bounds (refused
// is told why) and hands out the rest, released when they close.
func Listen(ln net.Listener, l *Limiter, refused func(reason string)) net.Listener {
	return &listener{Listener: ln, l: l, refused: refused}
}

type listener struct {
	net.Listener
	l       *Limiter
	refused func(string)
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := Source(c)
		if why := ln.l.Take(src); why != "" {
			ln.refused(why)
			_ = c.Close() // refused: nothing was read
			continue
		}
		return &Conn{Conn: c, release: func() { ln.l.Give(src) }}, nil
	}
}

// Conn is a held connection: its first Close releases its slot.
type Conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *Conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
