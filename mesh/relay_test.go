package mesh

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func wgPacket(typ byte, idxAt int, idx uint32, n int) []byte {
	p := make([]byte, n)
	p[0] = typ
	if idxAt >= 0 {
		binary.LittleEndian.PutUint32(p[idxAt:], idx)
	}
	return p
}

// TestRelaySplitsByIndex: while a successor shakes hands through the old
// agent, a packet goes to it when it is a peer's initiation or addressed
// to an index it chose (learned from what it sent); everything else,
// runts included, stays with the old device.
func TestRelaySplitsByIndex(t *testing.T) {
	r := &outRelay{indices: map[uint32]bool{}}
	// The successor sent an initiation with sender index 7.
	if i, ok := senderIndex(wgPacket(wgInitiation, 4, 7, 148)); !ok || i != 7 {
		t.Fatalf("senderIndex of an initiation = %d, %v", i, ok)
	}
	r.indices[7] = true
	cases := []struct {
		name string
		p    []byte
		want bool
	}{
		{"a peer's initiation", wgPacket(wgInitiation, 4, 99, 148), true},
		{"response to the successor", wgPacket(wgResponse, 8, 7, 92), true},
		{"response to the old device", wgPacket(wgResponse, 8, 8, 92), false},
		{"transport to the successor", wgPacket(wgTransport, 4, 7, 32), true},
		{"transport to the old device", wgPacket(wgTransport, 4, 3, 1500), false},
		{"cookie reply to the successor", wgPacket(wgCookie, 4, 7, 64), true},
		{"a runt transport", []byte{wgTransport, 0, 0}, false},
		{"unknown type", wgPacket(9, 4, 7, 32), false},
		{"empty", nil, false},
	}
	for _, tc := range cases {
		if got := r.theirs(tc.p); got != tc.want {
			t.Errorf("%s: theirs = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRelayFrame: the endpoint and packet survive the frame, for both
// families; a short frame is refused.
func TestRelayFrame(t *testing.T) {
	for _, ep := range []netip.AddrPort{netip.MustParseAddrPort("10.99.0.12:51820"), netip.MustParseAddrPort("[fd00::12]:51820")} {
		m := putRelay(nil, ep, []byte("payload"))
		got, p, ok := parseRelay(m)
		if !ok || got != ep || string(p) != "payload" {
			t.Errorf("%v: parsed %v %q %v", ep, got, p, ok)
		}
	}
	if _, _, ok := parseRelay(make([]byte, relayHeader-1)); ok {
		t.Error("a frame shorter than its header parsed")
	}
}

// TestRestoreKeepsTheSmallestMTU: a successor's learned MTUs are the old
// agent's; nonsense is dropped.
func TestRestoreKeepsTheSmallestMTU(t *testing.T) {
	p := NewPathMTUs()
	ep := netip.MustParseAddr("10.99.0.12")
	p.Restore([]LearnedMTU{{Peer: "node2", Endpoint: ep, MTU: 1300}, {Peer: "node3", Endpoint: ep, MTU: 0}, {Peer: "node4", MTU: 1 << 20}})
	got := p.Snapshot()
	if len(got) != 1 || got["node2"] != 1300 {
		t.Fatalf("restored %v; want node2 at 1300 only", got)
	}
}
