package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Watch delivers (coalesced) when weft's nftables table changes: the
// table, or a chain, rule, set, element or object in it, by anyone
// (weft's own writes included; `nft flush ruleset` deletes it), from the
// notifications `nft monitor` reads. Other tables' changes (kube-proxy's)
// are not told. Notifications the socket had no room for count as a
// change. It ends with ctx. The agent checks its objects (Damaged) when
// told, instead of listing them every few seconds while nothing changes.
func Watch(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nftables notifications: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("nftables notifications: %w", err)
	}
	f := os.NewFile(uintptr(fd), "nftables-notifications") // read through the runtime's poller: Close ends a Read
	changed := make(chan struct{}, 1)
	context.AfterFunc(ctx, func() { _ = f.Close() })
	go func() {
		buf := make([]byte, 64<<10) // a longer message is cut: only its arrival counts
		for {
			n, err := f.Read(buf)
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				return // closed
			}
			if err == nil && !touches(buf[:n], Table) {
				continue
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	return changed, nil
}

// touches reports whether a datagram of nftables notifications holds one
// about table (any family), or one cut short. Each message is a netlink
// header, a 4-byte nfgenmsg and attributes; for every kind of object the
// attribute of type 1 is its table's name (NFTA_TABLE_NAME,
// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, ...). A generation
// message (NFT_MSG_NEWGEN, one per transaction) has none.
func touches(b []byte, table string) bool {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return true // cut short: cannot tell
		}
		if l >= unix.NLMSG_HDRLEN+4 && tableAttr(b[unix.NLMSG_HDRLEN+4:l]) == table {
			return true
		}
		b = b[min(nlmsgAlign(l), len(b)):]
	}
	return false
}

// tableAttr is the string value of attribute type 1 in attrs, if any.
func tableAttr(attrs []byte) string {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(attrs) {
			return ""
		}
		if typ == 1 {
			return strings.TrimRight(string(attrs[4:l]), "\x00")
		}
		attrs = attrs[min(nlmsgAlign(l), len(attrs)):]
	}
	return ""
}

func nlmsgAlign(l int) int { return (l + 3) &^ 3 }
