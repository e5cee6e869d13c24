package mesh

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestReadPeer reads single peers out of a real wireguard-go device's UAPI
// text: the first, one in the middle and the last block, one whose public
// key is another peer's preshared key (found by its own line only), and
// one the device does not have.
func TestReadPeer(t *testing.T) {
	// The channel bind's endpoints all print as 127.0.0.1:port.
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), bindtest.NewChannelBinds()[0], device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	priv, _ := wgtypes.GeneratePrivateKey()
	keys := make([]wgtypes.Key, 4)
	for i := range keys {
		k, _ := wgtypes.GeneratePrivateKey()
		keys[i] = k.PublicKey()
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%x\nlisten_port=0\n", priv[:])
	for i, k := range keys[:3] {
		psk := keys[(i+1)%4] // peer 0's preshared key is peer 1's public key
		fmt.Fprintf(&cfg, "public_key=%x\npreshared_key=%x\nendpoint=127.0.0.1:5182%d\npersistent_keepalive_interval=%d\nallowed_ip=10.244.%d.0/24\nallowed_ip=fd00:%d::/64\n",
			k[:], psk[:], i, 25*i, i, i+1)
	}
	if err := dev.IpcSet(cfg.String()); err != nil {
		t.Fatal(err)
	}
	text, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys[:3] {
		p, ok, err := readPeer([]byte(text), k)
		if err != nil || !ok {
			t.Fatalf("peer %d: %v %v", i, ok, err)
		}
		want := fmt.Sprintf("%s psk %s endpoint 127.0.0.1:5182%d keepalive %v allowed [10.244.%d.0/24 fd00:%d::/64] handshake %v rx 0 tx 0",
			k, keys[(i+1)%4], i, time.Duration(25*i)*time.Second, i, i+1, time.Time{})
		got := fmt.Sprintf("%s psk %s endpoint %s keepalive %v allowed %v handshake %v rx %d tx %d",
			p.PublicKey, p.PresharedKey, p.Endpoint, p.PersistentKeepaliveInterval, allowedOf(p), p.LastHandshakeTime, p.ReceiveBytes, p.TransmitBytes)
		if got != want {
			t.Errorf("peer %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if p, ok, err := readPeer([]byte(text), keys[3]); ok || err != nil {
		t.Errorf("a key the device lacks (another peer's preshared key) read as %+v, %v", p, err)
	}
	// Every peer at once, as Peers reads them: the same as one by one.
	all, err := readPeers([]byte(text))
	if err != nil || len(all) != 3 {
		t.Fatalf("read %d peers, %v; want 3", len(all), err)
	}
	for _, p := range all { // in the device's order, which is a map's
		one, ok, _ := readPeer([]byte(text), p.PublicKey)
		if got, want := fmt.Sprintf("%+v", p), fmt.Sprintf("%+v", one); !ok || got != want {
			t.Errorf("peer %s read with the others:\n got %s\nwant %s", p.PublicKey, got, want)
		}
	}
	if _, err := readPeers([]byte("public_key=zz\n")); err == nil {
		t.Error("a public key that is not hex was read")
	}
}

func allowedOf(p wgtypes.Peer) []string {
	var out []string
	for _, n := range p.AllowedIPs {
		out = append(out, n.String())
	}
	return out
}
