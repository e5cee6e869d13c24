package nft

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// nftMsg is one nftables notification: header, nfgenmsg, attributes.
func nftMsg(attrs ...[]byte) []byte {
	var body []byte
	for _, a := range attrs {
		body = append(body, a...)
	}
	m := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(body))
	m = append(m, body...)
	binary.NativeEndian.PutUint32(m[0:4], uint32(len(m)))
	binary.NativeEndian.PutUint16(m[4:6], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_DELTABLE)
	return m
}

// attr is a netlink attribute, padded to 4 bytes.
func attr(typ uint16, v string) []byte {
	a := make([]byte, 4, 4+len(v)+4)
	a = append(a, v...)
	a = append(a, 0)
	binary.NativeEndian.PutUint16(a[0:2], uint16(len(a)))
	binary.NativeEndian.PutUint16(a[2:4], typ)
	for len(a)%4 != 0 {
		a = append(a, 0)
	}
	return a
}

func TestTouchesOnlyWeftsTable(t *testing.T) {
	weft := nftMsg(attr(1, Table), attr(2, "chain"))
	other := nftMsg(attr(1, "kube-proxy"), attr(2, "services"))
	gen := nftMsg(attr(2, "genid"), attr(3, "nft")) // NEWGEN: no table
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"weft's table", weft, true},
		{"another table", other, false},
		{"a generation message", gen, false},
		{"another's, then weft's, in one datagram", append(append(other[:len(other):len(other)], gen...), weft...), true},
		{"cut short", weft[:len(weft)-3], true},
		{"empty", nil, false},
	} {
		if got := touches(tc.b, Table); got != tc.want {
			t.Errorf("%s: touches = %v, want %v", tc.name, got, tc.want)
		}
	}
	// What the socket hands over is the kernel's, but never trusted to be
	// well formed: no input makes it panic.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, r.IntN(96))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		touches(b, Table)
	}
}
