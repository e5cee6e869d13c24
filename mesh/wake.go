package mesh

import (
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/wgnoise"
)

// The wake side of on-demand peers (ondemand.go): the packet paths hold
// what is for a resting peer and ask for its wake; the waker writes the
// peer back and hands over what waited.

// wake puts a resting peer back on the device. A peer woken by its own
// handshake is written without its keepalive (the next Apply adds it): with
// one, wireguard-go would start a handshake of its own at once, and two
// crossing initiations void each other's responses (both ends then wait
// 5 s to try again). Under m.mu.
func (m *Mesh) wake(o *onDemand, pub wgtypes.Key, byInit bool) error {
	p, ok := o.resting[pub]
	if !ok || m.dev.released.Load() {
		return nil // awake already (or gone), or a successor runs the data plane
	}
	ka := p.Keepalive
	if byInit {
		ka = 0
	}
	if err := m.wg.ConfigureDevice(m.dev.name, wgtypes.Config{Peers: []wgtypes.PeerConfig{peerConfig(p, udpAddr(p.Endpoint), ka)}}); err != nil {
		return err
	}
	m.writes.Add(1)
	m.peerWrites[WriteWake].Add(1)
	delete(o.resting, pub)
	if o.desired != nil {
		o.desired[pub] = p // awake now: known to the next Apply
	}
	o.idle[pub] = idleMark{bytes: -1, since: time.Now()} // counts from the next look
	o.wakes.Add(1)
	o.publishChanged([]wgtypes.Key{pub}, nil)
	if f := m.onWake.Load(); f != nil {
		(*f)(pub)
	}
	return nil
}

// waker serves the wakes the packet paths ask for, then hands over what
// waited: held packets to the TUN reader, held initiations to the bind.
func (m *Mesh) waker(o *onDemand) {
	for {
		select {
		case <-m.dev.Done():
			return
		case <-o.signal:
		}
		o.mu.Lock()
		wanted, inits := o.wanted, o.inits
		o.wanted, o.inits = map[wgtypes.Key]bool{}, nil
		o.mu.Unlock()
		byInit := make(map[wgtypes.Key]bool, len(inits))
		for _, in := range inits {
			wanted[in.pub], byInit[in.pub] = true, true
		}
		m.mu.Lock()
		woke := make(map[wgtypes.Key]bool, len(wanted))
		for pub := range wanted {
			if err := m.wake(o, pub, byInit[pub]); err != nil {
				m.dev.logger.Warn("cannot wake a resting peer", "peer", pub.String(), "err", err)
				continue
			}
			woke[pub] = true
		}
		m.mu.Unlock()
		var ready [][]byte
		o.mu.Lock()
		for pub := range woke {
			ready = append(ready, o.held[pub]...)
			o.nheld -= len(o.held[pub])
			delete(o.held, pub)
		}
		o.mu.Unlock()
		if len(ready) > 0 {
			m.dev.gate.deliver(ready)
		}
		for _, in := range inits {
			if woke[in.pub] {
				m.dev.bind.inject(in.pkt, in.ep)
			} else {
				o.dropped.Add(1)
			}
		}
	}
}

func (o *onDemand) poke() {
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// holdPacket keeps a copy of pkt, an outgoing packet for the resting peer
// pub, and asks for its wake.
func (o *onDemand) holdPacket(pub wgtypes.Key, pkt []byte) {
	o.mu.Lock()
	if len(o.held[pub]) >= heldPerPeer || o.nheld >= heldInAll {
		o.mu.Unlock()
		o.dropped.Add(1)
		return
	}
	o.held[pub] = append(o.held[pub], append([]byte(nil), pkt...))
	o.nheld++
	first := !o.wanted[pub]
	o.wanted[pub] = true
	o.mu.Unlock()
	if first {
		o.byPacket.Add(1)
	}
	o.poke()
}

// takeInitiation reports whether pkt, received from ep, is a handshake
// initiation from a resting peer; if so it keeps a copy for after the wake.
// Reading the key costs an X25519, so only initsPerSec initiations are
// read (those past the limit reach wireguard-go as they are: from a
// resting peer, dropped, and sent again 5 s later).
func (o *onDemand) takeInitiation(pkt []byte, ep conn.Endpoint) bool {
	t := o.table.Load()
	if t == nil || !wgnoise.IsInitiation(pkt) || !o.allowRead(time.Now()) {
		return false
	}
	pub, ok := o.reader.Load().Initiator(pkt)
	if !ok {
		return false
	}
	if !t.rests(pub) {
		return false
	}
	o.mu.Lock()
	if len(o.inits) >= heldInits {
		o.mu.Unlock()
		o.dropped.Add(1)
		return true
	}
	o.inits = append(o.inits, heldInit{pub: pub, pkt: append([]byte(nil), pkt...), ep: ep})
	o.mu.Unlock()
	o.byInit.Add(1)
	o.poke()
	return true
}

// allowRead is a token bucket of initsPerSec (burst as much).
func (o *onDemand) allowRead(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tokens = min(initsPerSec, o.tokens+now.Sub(o.tokenAt).Seconds()*initsPerSec)
	o.tokenAt = now
	if o.tokens < 1 {
		return false
	}
	o.tokens--
	return true
}

// setKey follows a change of the device's key.
func (o *onDemand) setKey(priv wgtypes.Key) { o.reader.Store(wgnoise.NewResponder(priv)) }

// tunHold is the TUN reader's side: it takes the packets for resting peers
// out of a batch.
type tunHold struct{ o *onDemand }

// filter removes from bufs[:n] the packets for resting peers (held for
// their wake) and returns how many remain, moved to the front.
func (h *tunHold) filter(bufs [][]byte, sizes []int, offset, n int) int {
	t := h.o.table.Load()
	if t == nil {
		return n
	}
	k := 0
	for i := range n {
		pkt := bufs[i][offset : offset+sizes[i]]
		if pub, ok := t.lookup(pkt); ok {
			h.o.holdPacket(pub, pkt)
			continue
		}
		if k != i {
			sizes[k] = copy(bufs[k][offset:], pkt)
		}
		k++
	}
	return k
}
