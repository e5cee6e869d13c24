package simpeer

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pq"
)

// A real wireguard-go device with two simulated nodes as peers (at
// 127.0.0.1 and 127.0.0.2, one Sim on one socket): a ping to each node's
// pod range is answered by that node through the tunnel. A post-quantum
// exchange with the second node gives a preshared key; the device's peer
// re-created under it shakes hands again and is still answered. A peer
// configured with a key the Sim does not hold gets no answer.
func TestSimulatedNodesAnswerARealDevice(t *testing.T) {
	keys := map[netip.Addr]wgtypes.Key{}
	for _, a := range []string{"127.0.0.1", "127.0.0.2"} {
		keys[netip.MustParseAddr(a)], _ = wgtypes.GeneratePrivateKey()
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	sim := New(Config{Node: func(a netip.Addr) (wgtypes.Key, bool) { k, ok := keys[a]; return k, ok }, UDP: udp, PQ: tcp})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	port := udp.LocalAddr().(*net.UDPAddr).Port

	self, _ := wgtypes.GeneratePrivateKey()
	stranger, _ := wgtypes.GeneratePrivateKey()
	tn := tuntest.NewChannelTUN()
	dev := device.NewDevice(tn.TUN(), conn.NewStdNetBind(), device.NewLogger(device.LogLevelError, ""))
	defer dev.Close()
	peerConf := func(a string, pub wgtypes.Key, cidr string, psk wgtypes.Key) string {
		return fmt.Sprintf("public_key=%x\npreshared_key=%x\nendpoint=%s:%d\nallowed_ip=%s\n", pub[:], psk[:], a, port, cidr)
	}
	k1, k2 := keys[netip.MustParseAddr("127.0.0.1")].PublicKey(), keys[netip.MustParseAddr("127.0.0.2")].PublicKey()
	conf := fmt.Sprintf("private_key=%x\nlisten_port=0\n", self[:]) +
		peerConf("127.0.0.1", k1, "10.244.4.0/29", wgtypes.Key{}) +
		peerConf("127.0.0.2", k2, "10.244.4.8/29", wgtypes.Key{}) +
		peerConf("127.0.0.1", stranger.PublicKey(), "10.244.4.16/29", wgtypes.Key{})
	if err := dev.IpcSet(conf); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.244.1.1")
	ping := func(dst string) error {
		d := netip.MustParseAddr(dst)
		tn.Outbound <- tuntest.Ping(d, src)
		timeout := time.After(5 * time.Second)
		for {
			select {
			case pkt := <-tn.Inbound:
				// tuntest.Ping builds an echo request; the Sim's answer is its
				// reply, so compare with the reply built the same way.
				if want := EchoReply(tuntest.Ping(d, src)); bytes.Equal(pkt, want) {
					return nil
				}
			case <-timeout:
				return fmt.Errorf("no echo reply from %s in 5 s", dst)
			}
		}
	}
	for _, dst := range []string{"10.244.4.1", "10.244.4.9"} {
		if err := ping(dst); err != nil {
			t.Fatal(err)
		}
	}
	if c := sim.For(self.PublicKey()); c.Handshakes != 2 || c.Echoes != 2 {
		t.Fatalf("the Sim counted %+v for the device, want 2 handshakes and 2 echoes", c)
	}
	if err := ping("10.244.4.17"); err == nil {
		t.Fatal("a peer the Sim holds no key for was answered")
	}

	// A key exchange with the node at 127.0.0.2, then a fresh handshake under it.
	id, _ := pq.NewIdentity(self)
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.2:%d", tcp.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(pq.Timeout))
	psk, err := pq.Initiate(c, id, k2)
	c.Close()
	if err != nil {
		t.Fatalf("key exchange with the simulated node: %v", err)
	}
	if err := dev.IpcSet(fmt.Sprintf("public_key=%x\nremove=true\n", k2[:]) + peerConf("127.0.0.2", k2, "10.244.4.8/29", psk)); err != nil {
		t.Fatal(err)
	}
	if err := ping("10.244.4.10"); err != nil {
		t.Fatalf("under the agreed preshared key: %v", err)
	}
	if c := sim.For(self.PublicKey()); c.Exchanges != 1 || c.Handshakes != 3 {
		t.Fatalf("the Sim counted %+v, want 1 exchange and 3 handshakes", c)
	}
}

func TestEchoReply(t *testing.T) {
	req := tuntest.Ping(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"))
	r := EchoReply(req)
	if r == nil || r[20] != 0 || !bytes.Equal(r[12:16], req[16:20]) || !bytes.Equal(r[16:20], req[12:16]) || checksum(r[20:]) != 0 {
		t.Fatalf("reply %x to %x", r, req)
	}
	if EchoReply(r) != nil {
		t.Fatal("an echo reply was answered")
	}
	for _, bad := range [][]byte{nil, req[:19], req[:24], append([]byte{0x60}, req[1:]...)} {
		if EchoReply(bad) != nil {
			t.Fatalf("answered %x", bad)
		}
	}
}
