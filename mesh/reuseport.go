package mesh

import (
	"syscall"
	_ "unsafe" // go:linkname

	"golang.org/x/sys/unix"
)

// wireguard-go's StdNetBind opens its sockets through a list of socket
// options it applies before bind (conn.controlFns), with no way to add one
// from outside. weft adds SO_REUSEPORT there, so that a successor's device
// can bind the WireGuard port at take while the old agent still holds it
// (handover version 2): the port is never unbound, and no packet arrives
// to find it closed (with version 1, one did at every handover of a
// receiving node: the lab's UDP NoPorts). A group of SO_REUSEPORT sockets only takes members of the same
// user (root here), so no other program can join it. If wireguard-go
// renames the list, the link fails at build time, not at run time.
//
//go:linkname wgControlFns golang.zx2c4.com/wireguard/conn.controlFns
var wgControlFns []func(network, address string, c syscall.RawConn) error

func init() {
	wgControlFns = append(wgControlFns, func(network, address string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	})
}
