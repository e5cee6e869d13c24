package mesh

import (
	"maps"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// restingTable answers, for an outgoing packet, whether it is for a
// resting peer (one taken off the device while idle; see docs/design.md,
// "On-demand peers") and which. It is immutable: the mesh makes a new
// one when the resting set changes and the TUN reader loads it through an
// atomic pointer, so the packet path takes no lock, and while no peer
// rests it does no lookup at all (nil table).
//
// A lookup masks the destination with each prefix length the resting
// peers' ranges use (a cluster has one or two per family: the pod CIDR
// size and the node addresses' /32 or /128) and looks the result up in a
// map.
//
// A table is a base, built from every resting peer, and the changes since
// (a delta of at most restingDelta peers): a wake or a rest copies only the
// delta, not the base. At 5000 Nodes a base is ~1.3 MB of maps, and
// building one at every wake and rest was the working set's largest
// garbage (README, "Memory at 5000").
type restingTable struct {
	base    *restingBase
	woke    map[wgtypes.Key]struct{}       // in base, not resting (awake, or resting again under added)
	added   map[wgtypes.Key][]netip.Prefix // resting since base was built, with their ranges
	addedBy map[netip.Prefix]wgtypes.Key   // added's ranges
	bits4   []int                          // prefix lengths of base and added, longest first
	bits6   []int
	n       int // resting peers
}

// restingBase is a table's shared part, built once from every resting peer.
type restingBase struct {
	byPrefix map[netip.Prefix]wgtypes.Key
	keys     map[wgtypes.Key]struct{}
}

// restingDelta is the most peers a table holds outside its base; one more
// change builds a new base.
const restingDelta = 64

// newRestingTable builds the table for peers (resting, by key), which it
// does not keep: at thousands of resting peers, a copy of each at every
// rest and wake was megabytes kept and as many to collect.
func newRestingTable(peers map[wgtypes.Key]Peer) *restingTable {
	if len(peers) == 0 {
		return nil
	}
	b := &restingBase{byPrefix: make(map[netip.Prefix]wgtypes.Key, 2*len(peers)), keys: make(map[wgtypes.Key]struct{}, len(peers))}
	t := &restingTable{base: b, n: len(peers)}
	for pub, peer := range peers {
		b.keys[pub] = struct{}{}
		for _, p := range peer.AllowedIPs {
			p = p.Masked()
			b.byPrefix[p] = pub
			t.addBits(p)
		}
	}
	return t
}

// publish rebuilds the resting table the packet paths read. Under m.mu.
func (o *onDemand) publish() {
	o.table.Store(newRestingTable(o.resting))
	o.nresting.Store(int64(len(o.resting)))
	o.changed()
}

// publishChanged is publish after only the peers in woke woke and those
// in rested came to rest: the table copies its changes, not every resting
// peer (restingTable.changed). Under m.mu.
func (o *onDemand) publishChanged(woke, rested []wgtypes.Key) {
	o.table.Store(o.table.Load().changed(woke, rested, o.resting))
	o.nresting.Store(int64(len(o.resting)))
	o.changed()
}

// changed is t after the peers in woke woke and those in rested came to
// rest (rested holds every resting peer; those in woke need not be in
// it). It copies t's delta, not its base; once the delta would pass
// restingDelta it builds the table afresh from resting.
func (t *restingTable) changed(woke []wgtypes.Key, rested []wgtypes.Key, resting map[wgtypes.Key]Peer) *restingTable {
	if t == nil || len(t.woke)+len(t.added)+len(woke)+len(rested) > restingDelta {
		return newRestingTable(resting)
	}
	nt := &restingTable{base: t.base, woke: maps.Clone(t.woke), added: maps.Clone(t.added), addedBy: maps.Clone(t.addedBy),
		bits4: t.bits4, bits6: t.bits6, n: t.n}
	if nt.woke == nil {
		nt.woke = map[wgtypes.Key]struct{}{}
	}
	if nt.added == nil {
		nt.added, nt.addedBy = map[wgtypes.Key][]netip.Prefix{}, map[netip.Prefix]wgtypes.Key{}
	}
	for _, pub := range woke {
		if !nt.rests(pub) {
			continue
		}
		nt.n--
		if ps, ok := nt.added[pub]; ok {
			for _, p := range ps {
				if nt.addedBy[p] == pub {
					delete(nt.addedBy, p)
				}
			}
			delete(nt.added, pub)
		}
		if _, ok := nt.base.keys[pub]; ok {
			nt.woke[pub] = struct{}{}
		}
	}
	for _, pub := range rested {
		peer, ok := resting[pub]
		if !ok || nt.rests(pub) {
			continue
		}
		nt.n++
		// Into added even when base knows the peer: its ranges may have
		// changed while it was awake; base's stay hidden under woke.
		ps := make([]netip.Prefix, 0, len(peer.AllowedIPs))
		for _, p := range peer.AllowedIPs {
			p = p.Masked()
			ps = append(ps, p)
			nt.addedBy[p] = pub
			nt.addBits(p)
		}
		nt.added[pub] = ps
	}
	if nt.n == 0 {
		return nil
	}
	return nt
}

// rests reports whether pub rests.
func (t *restingTable) rests(pub wgtypes.Key) bool {
	if t == nil {
		return false
	}
	if _, ok := t.added[pub]; ok {
		return true
	}
	if _, ok := t.woke[pub]; ok {
		return false
	}
	_, ok := t.base.keys[pub]
	return ok
}

// count is how many peers rest.
func (t *restingTable) count() int {
	if t == nil {
		return 0
	}
	return t.n
}

// addBits adds p's length to the lengths of its family that lookups try.
// A new length goes into a copy: a changed table shares its lengths with
// the table it came from, which the packet paths may be reading.
func (t *restingTable) addBits(p netip.Prefix) {
	bits := &t.bits6
	if p.Addr().Is4() {
		bits = &t.bits4
	}
	if slices.Contains(*bits, p.Bits()) {
		return
	}
	nb := append(slices.Clone(*bits), p.Bits())
	slices.Sort(nb)
	slices.Reverse(nb)
	*bits = nb
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
		if pub, ok := t.addedBy[p]; ok {
			return pub, true
		}
		if pub, ok := t.base.byPrefix[p]; ok {
			if _, awake := t.woke[pub]; !awake {
				return pub, true
			}
		}
	}
	return wgtypes.Key{}, false
}
