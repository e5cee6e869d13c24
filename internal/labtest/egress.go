package labtest

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// ListenIn starts a TCP listener inside a namespace (via do) and returns the
// source address of each connection it accepts.
func ListenIn(t *testing.T, do func(func() error) error, addr string) <-chan netip.Addr {
	t.Helper()
	var ln net.Listener
	if err := do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan netip.Addr, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return seen
}

// DialFrom connects from inside a namespace and reports the error.
func DialFrom(do func(func() error) error, dst netip.AddrPort) error {
	return do(func() error {
		c, err := net.DialTimeout("tcp", dst.String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}
