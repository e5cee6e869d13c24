package mesh

import (
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// restingTable answers, for an outgoing packet, whether it is for a
// resting peer (one taken off the device while idle; see docs/design.md,
// "On-demand peers") and which. It is immutable: the mesh builds a new
// one when the resting set changes and the TUN reader loads it through an
// atomic pointer, so the packet path takes no lock, and while no peer
// rests it does no lookup at all (nil table).
//
// A lookup masks the destination with each prefix length the resting
// peers' ranges use (a cluster has one or two per family: the pod CIDR
// size and the node addresses' /32 or /128) and looks the result up in a
// map.
type restingTable struct {
	byPrefix map[netip.Prefix]wgtypes.Key
	keys     map[wgtypes.Key]struct{} // the resting peers (the mesh keeps them as they will be written)
	bits4    []int                    // prefix lengths in use, longest first
	bits6    []int
}

// newRestingTable builds the table for peers (resting, by key), which it
// does not keep: at thousands of resting peers, a copy of each at every
// rest and wake was megabytes kept and as many to collect.
func newRestingTable(peers map[wgtypes.Key]Peer) *restingTable {
	if len(peers) == 0 {
		return nil
	}
	t := &restingTable{byPrefix: make(map[netip.Prefix]wgtypes.Key, 2*len(peers)), keys: make(map[wgtypes.Key]struct{}, len(peers))}
	for pub, peer := range peers {
		t.keys[pub] = struct{}{}
		for _, p := range peer.AllowedIPs {
			p = p.Masked()
			t.byPrefix[p] = pub
			if p.Addr().Is4() {
				t.bits4 = appendBits(t.bits4, p.Bits())
			} else {
				t.bits6 = appendBits(t.bits6, p.Bits())
			}
		}
	}
	return t
}

// peers are the resting peers' keys (nil when none rests).
func (t *restingTable) peers() map[wgtypes.Key]struct{} {
	if t == nil {
		return nil
	}
	return t.keys
}

func appendBits(bits []int, b int) []int {
	if slices.Contains(bits, b) {
		return bits
	}
	bits = append(bits, b)
	slices.Sort(bits)
	slices.Reverse(bits)
	return bits
}

// lookup returns the resting peer an IP packet is addressed to.
func (t *restingTable) lookup(pkt []byte) (wgtypes.Key, bool) {
	if t == nil || len(pkt) < 20 {
		return wgtypes.Key{}, false
	}
	var dst netip.Addr
	var bits []int
	switch pkt[0] >> 4 {
	case 4:
		dst, bits = netip.AddrFrom4([4]byte(pkt[16:20])), t.bits4
	case 6:
		if len(pkt) < 40 {
			return wgtypes.Key{}, false
		}
		dst, bits = netip.AddrFrom16([16]byte(pkt[24:40])), t.bits6
	default:
		return wgtypes.Key{}, false
	}
	for _, b := range bits {
		p, _ := dst.Prefix(b)
		if pub, ok := t.byPrefix[p]; ok {
			return pub, true
		}
	}
	return wgtypes.Key{}, false
}
