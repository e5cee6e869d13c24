package simpeer

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pq"
)

// The simulated nodes' side of the pairs' post-quantum key exchange.

// pqSlots bounds the exchanges answered at once.
const pqSlots = 64

func (s *Sim) servePQ() {
	slots := make(chan struct{}, pqSlots)
	for {
		c, err := s.cfg.PQ.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: no busy loop
			continue
		}
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(pq.FirstMessageTimeout))
			s.respond(c)
		}()
	}
}

// respond answers one exchange as the node the connection was made to.
func (s *Sim) respond(c net.Conn) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	addr, _ := netip.AddrFromSlice(local.IP)
	s.mu.Lock()
	n := s.node(addr.Unmap())
	var id *pq.Identity
	if n != nil {
		if n.id == nil {
			n.id, _ = pq.NewIdentity(n.resp.Key())
		}
		id = n.id
	}
	s.mu.Unlock()
	if id == nil {
		return
	}
	r := &pq.Responder{
		Self:  func() *pq.Identity { return id },
		Known: func(wgtypes.Key) bool { return true }, // the MACs still prove the initiator's key
		Busy:  func(wgtypes.Key) bool { return false },
		Install: func(pub, psk wgtypes.Key) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			n.pair(pub).psk = psk
			s.count(pub, func(c *Counts) { c.Exchanges++ })
			return nil
		},
		Replays: &s.replays,
	}
	if pub, _, err := r.Respond(c); err != nil && !errors.Is(err, pq.ErrUnauthenticated) {
		s.mu.Lock()
		s.count(pub, func(c *Counts) { c.ExchangeFails++ })
		s.mu.Unlock()
	}
}
