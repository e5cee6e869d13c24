package wgnoise

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// initiator is a real wireguard-go device (key a) with one peer, b, on a
// channel bind; next returns what it sends b.
type initiator struct {
	tun  *tuntest.ChannelTUN
	bind conn.Bind // b's end
	msgs chan sent
}

type sent struct {
	b  []byte
	ep conn.Endpoint
}

func newInitiator(t *testing.T, a, b, psk wgtypes.Key) *initiator {
	t.Helper()
	binds := bindtest.NewChannelBinds()
	in := &initiator{tun: tuntest.NewChannelTUN(), bind: binds[1], msgs: make(chan sent, 16)}
	dev := device.NewDevice(in.tun.TUN(), binds[0], device.NewLogger(device.LogLevelError, ""))
	t.Cleanup(dev.Close)
	bPub := b.PublicKey()
	if err := dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=0\npublic_key=%x\npreshared_key=%x\nendpoint=127.0.0.1:1\nallowed_ip=10.0.2.0/24\n", a[:], bPub[:], psk[:])); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	recv, _, err := binds[1].Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { binds[1].Close() })
	// Both of the bind's receive functions (its "IPv4" and "IPv6"
	// channels): the device answers where the last message came from.
	for _, fn := range recv {
		go func() {
			for {
				b, sizes, eps := make([]byte, 2048), []int{0}, []conn.Endpoint{nil}
				if _, err := fn([][]byte{b}, sizes, eps); err != nil {
					return
				}
				in.msgs <- sent{b[:sizes[0]], eps[0]}
			}
		}()
	}
	return in
}

// next is the device's next message to b and where to answer it, or nil
// after within.
func (in *initiator) next(within time.Duration) ([]byte, conn.Endpoint) {
	select {
	case m := <-in.msgs:
		return m.b, m.ep
	case <-time.After(within):
		return nil, nil
	}
}

// A real wireguard-go device initiates a handshake to b; reading the
// message with b's key names the initiator. With another node's key, or
// with any byte of the message changed, it names nobody.
func TestInitiatorFromRealHandshake(t *testing.T) {
	a, _ := wgtypes.GeneratePrivateKey()
	b, _ := wgtypes.GeneratePrivateKey()
	in := newInitiator(t, a, b, wgtypes.Key{})
	in.tun.Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.1.1"))
	msg, _ := in.next(10 * time.Second)
	if msg == nil {
		t.Fatal("no handshake initiation from the device in 10 s")
	}
	n := len(msg)
	if !IsInitiation(msg) {
		t.Fatalf("the first message (%d bytes, type %d) is not an initiation", n, msg[0])
	}
	if pub, ok := NewResponder(b).Initiator(msg); !ok || pub != a.PublicKey() {
		t.Fatalf("read with the responder's key: %v %v, want the initiator %v", pub, ok, a.PublicKey())
	}
	other, _ := wgtypes.GeneratePrivateKey()
	if pub, ok := NewResponder(other).Initiator(msg); ok {
		t.Fatalf("read with another node's key: %v, want nobody", pub)
	}
	r := NewResponder(b)
	for i := range OffMAC1 + 16 { // all but mac2 (cookies), which is not checked
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x40
		if pub, ok := r.Initiator(bad); ok {
			t.Fatalf("byte %d changed: read %v, want nobody", i, pub)
		}
	}
	if _, ok := r.Initiator(msg[:len(msg)-1]); ok {
		t.Fatal("a short message named an initiator")
	}
}

// A real wireguard-go device (a) initiates to b under a preshared key;
// Answer's response completes its handshake: a's queued ping reaches b as
// a transport message that opens under the session's Recv key, and b's
// reply, sealed under Send, comes out of a's TUN. Under a different
// preshared key the device refuses the response and sends no data.
func TestAnswerCompletesARealHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samePSK bool
	}{{"same preshared key", true}, {"different preshared key", false}} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := wgtypes.GeneratePrivateKey()
			b, _ := wgtypes.GeneratePrivateKey()
			psk, _ := wgtypes.GenerateKey()
			dev := newInitiator(t, a, b, psk)
			next, tunA := dev.next, dev.tun
			src, dst := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.2.1")
			ping := tuntest.Ping(dst, src)
			tunA.Outbound <- ping
			init, ep := next(10 * time.Second)
			if init == nil {
				t.Fatal("no handshake initiation from the device in 10 s")
			}
			in, ok := NewResponder(b).Read(init)
			if !ok || in.Peer != a.PublicKey() {
				t.Fatalf("read the initiation: %v %v", in, ok)
			}
			use := psk
			if !tc.samePSK {
				use, _ = wgtypes.GenerateKey()
			}
			resp := make([]byte, device.MessageResponseSize)
			s, err := NewResponder(b).Answer(in, use, 7, resp)
			if err != nil {
				t.Fatal(err)
			}
			var cookie device.CookieGenerator
			cookie.Init(device.NoisePublicKey(a.PublicKey()))
			cookie.AddMacs(resp)
			if err := dev.bind.Send([][]byte{resp}, ep); err != nil {
				t.Fatal(err)
			}
			data, _ := next(time.Second)
			if !tc.samePSK {
				if data != nil && !IsInitiation(data) {
					t.Fatalf("under another preshared key the device sent %d bytes of type %d, want nothing or a new initiation", len(data), data[0])
				}
				return
			}
			if data == nil {
				t.Fatal("no transport message after the response")
			}
			if r, ok := Receiver(data); !ok || r != 7 {
				t.Fatalf("receiver index %d %v, want 7 (the response's sender)", r, ok)
			}
			recvAEAD, _ := chacha20poly1305.New(s.Recv[:])
			got, _, err := Open(recvAEAD, nil, data)
			if err != nil {
				t.Fatalf("open the device's transport message: %v", err)
			}
			if !bytes.Equal(got[:len(ping)], ping) {
				t.Fatalf("the opened packet is not the ping:\n%x\n%x", got, ping)
			}
			reply := tuntest.Ping(src, dst)
			sendAEAD, _ := chacha20poly1305.New(s.Send[:])
			if err := dev.bind.Send([][]byte{Seal(nil, sendAEAD, in.Sender, 0, reply)}, ep); err != nil {
				t.Fatal(err)
			}
			select {
			case pkt := <-tunA.Inbound:
				if !bytes.Equal(pkt, reply) {
					t.Fatalf("the device delivered %x, want %x", pkt, reply)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the sealed reply did not come out of the device's TUN")
			}
		})
	}
}
