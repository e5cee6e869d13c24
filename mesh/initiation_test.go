package mesh

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// A real wireguard-go device initiates a handshake to b; reading the
// message with b's key names the initiator. With another node's key, or
// with any byte of the message changed, it names nobody.
func TestInitiatorFromRealHandshake(t *testing.T) {
	a, _ := wgtypes.GeneratePrivateKey()
	b, _ := wgtypes.GeneratePrivateKey()
	binds := bindtest.NewChannelBinds()
	tunA := tuntest.NewChannelTUN()
	dev := device.NewDevice(tunA.TUN(), binds[0], device.NewLogger(device.LogLevelError, ""))
	defer dev.Close()
	bPub := b.PublicKey()
	if err := dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=0\npublic_key=%x\nendpoint=127.0.0.1:1\nallowed_ip=10.0.2.0/24\n", a[:], bPub[:])); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	recv, _, err := binds[1].Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer binds[1].Close()
	tunA.Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.1.1"))

	msg := make([]byte, 2048)
	got := make(chan int, 1)
	go func() {
		sizes, eps := []int{0}, []conn.Endpoint{nil}
		if _, err := recv[0]([][]byte{msg}, sizes, eps); err == nil {
			got <- sizes[0]
		}
	}()
	var n int
	select {
	case n = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake initiation from the device in 10 s")
	}
	msg = msg[:n]
	if !isInitiation(msg) {
		t.Fatalf("the first message (%d bytes, type %d) is not an initiation", n, msg[0])
	}
	if pub, ok := newInitiationReader(b).initiator(msg); !ok || pub != a.PublicKey() {
		t.Fatalf("read with the responder's key: %v %v, want the initiator %v", pub, ok, a.PublicKey())
	}
	other, _ := wgtypes.GeneratePrivateKey()
	if pub, ok := newInitiationReader(other).initiator(msg); ok {
		t.Fatalf("read with another node's key: %v, want nobody", pub)
	}
	r := newInitiationReader(b)
	for i := range offMAC1 + 16 { // all but mac2 (cookies), which is not checked
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x40
		if pub, ok := r.initiator(bad); ok {
			t.Fatalf("byte %d changed: read %v, want nobody", i, pub)
		}
	}
	if _, ok := r.initiator(msg[:len(msg)-1]); ok {
		t.Fatal("a short message named an initiator")
	}
}
