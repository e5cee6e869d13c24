package connlimit

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestBounds(t *testing.T) {
	l := New(2, 3)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	for i, step := range []struct {
		src  netip.Addr
		want string
	}{{a, ""}, {a, ""}, {a, PerSource}, {b, ""}, {c, Total}} {
		if got := l.Take(step.src); got != step.want {
			t.Fatalf("step %d: Take(%s) = %q, want %q", i, step.src, got, step.want)
		}
	}
	l.Give(a)
	if got := l.Take(c); got != "" {
		t.Errorf("after a slot was given back: %q", got)
	}
	for _, s := range []netip.Addr{a, b, c} {
		l.Give(s)
	}
	if n := l.Sources(); n != 0 {
		t.Errorf("%d sources left after every connection closed: the map must not grow with strangers", n)
	}
}

// TestListenClosesOverTheBound: a third connection from one address is
// closed at accept; closing one held connection (twice) frees one slot.
func TestListenClosesOverTheBound(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	refused := make(chan string, 4)
	ln := Listen(raw, New(2, 0), func(why string) { refused <- why })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2, c3 := dial(), dial(), dial()
	defer c1.Close()
	defer c2.Close()
	s1, s2 := <-accepted, <-accepted
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("the third connection from one source was not closed")
	}
	if why := <-refused; why != PerSource {
		t.Errorf("refused as %q, want per-source", why)
	}
	s1.Close()
	s1.Close()
	c4 := dial()
	defer c4.Close()
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a slot freed by Close was not given to the next connection")
	}
	s2.Close()
}
