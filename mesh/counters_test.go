package mesh

import (
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The device's counts of a re-created peer start from zero; what the mesh
// reports goes on from where it was, also when read between the
// re-creation and the carry, and starts over for a peer that left.
func TestCountersSurviveRecreation(t *testing.T) {
	var c counters
	pub := wgtypes.Key{1}
	read := func(what string, rx, tx, wantRx, wantTx int64) wgtypes.Peer {
		t.Helper()
		ps := []wgtypes.Peer{{PublicKey: pub, ReceiveBytes: rx, TransmitBytes: tx}}
		c.adjust(ps)
		if ps[0].ReceiveBytes != wantRx || ps[0].TransmitBytes != wantTx {
			t.Fatalf("%s: rx %d tx %d, want %d %d", what, ps[0].ReceiveBytes, ps[0].TransmitBytes, wantRx, wantTx)
		}
		return ps[0]
	}
	read("first object", 100, 1000, 100, 1000)
	before := read("read before the re-creation", 150, 1500, 150, 1500)
	read("re-created, not yet carried", 0, 0, 150, 1500)
	c.carry(before) // what WritePeerKey and Apply do after their write
	read("carried", 5, 50, 155, 1550)
	c.forget(pub)
	read("left and came back", 7, 70, 7, 70)
}
