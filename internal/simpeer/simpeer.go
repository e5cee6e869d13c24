// Package simpeer answers, from one process, for thousands of simulated
// weft nodes: WireGuard handshakes under each node's key (package
// wgnoise, no wireguard-go device per node), the pairs' post-quantum key
// exchange (package pq) and ICMP echo requests to their pod ranges, sent
// back through the tunnel. bench-scale's generated Nodes are live through
// it: a real agent that talks to one holds a real session with a real
// preshared key, and a peer that rests and wakes pays a real handshake.
//
// It only answers: it never initiates a handshake or an exchange (a pair
// whose lower key is the simulated node's rotates when the real agent
// takes over, at 1.25 times the rotation), sends no keepalive and keeps
// no replay window for transport counters. It is a load for the agents,
// not a WireGuard implementation to trust.
package simpeer

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/wgnoise"
	"github.com/weftnet/weft/pq"
)

// Config is what a Sim answers with.
type Config struct {
	// Node returns the private key of the simulated node at addr, the
	// address its Node announces (WireGuard endpoint, key exchange).
	Node func(addr netip.Addr) (wgtypes.Key, bool)
	// UDP is bound to the WireGuard port on the nodes' addresses (a
	// wildcard address and a local route for their range: Serve sets
	// IP_PKTINFO to learn which node a datagram is for and to answer
	// from it).
	UDP *net.UDPConn
	// PQ listens on the key exchange port on the nodes' addresses (nil:
	// no exchanges; the agents must run with --pq=off or preferred).
	PQ  net.Listener
	Log *slog.Logger
}

// Counts are what a Sim did, in all or for one initiator.
type Counts struct {
	Handshakes    uint64 // initiations answered
	Refused       uint64 // initiations that did not authenticate, or replays
	CookieReplies uint64 // cookie replies taken (an agent under load)
	Keepalives    uint64
	Echoes        uint64 // echo requests answered
	Exchanges     uint64 // key exchanges answered and installed
	ExchangeFails uint64
}

// Sim is the simulated nodes' one answering process.
type Sim struct {
	cfg     Config
	replays pq.Replays

	mu       sync.Mutex
	nodes    map[netip.Addr]*node
	sessions map[uint32]*session // by the index this end chose
	total    Counts
	by       map[wgtypes.Key]*Counts // by initiator
}

type node struct {
	addr  netip.Addr
	resp  *wgnoise.Responder
	id    *pq.Identity
	pairs map[wgtypes.Key]*pair
}

// pair is one simulated node and one initiator.
type pair struct {
	psk      wgtypes.Key
	cookie   device.CookieGenerator // mac1/mac2 of the responses to the initiator
	lastTS   [12]byte               // the newest initiation's timestamp (replays are refused)
	sessions []uint32               // local indices, newest last (at most keepSessions)
}

// keepSessions is how many sessions a pair keeps: the initiator may still
// send under the previous one for a moment after a new handshake.
const keepSessions = 3

type session struct {
	n       *node
	peer    wgtypes.Key
	remote  uint32
	recv    cipher.AEAD
	send    cipher.AEAD
	counter uint64
}

// New returns a Sim for cfg; Serve runs it.
func New(cfg Config) *Sim {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Sim{cfg: cfg, nodes: map[netip.Addr]*node{}, sessions: map[uint32]*session{}, by: map[wgtypes.Key]*Counts{}}
}

// Total is what the Sim did for everyone.
func (s *Sim) Total() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// For is what the Sim did for one initiator (a real agent's key).
func (s *Sim) For(pub wgtypes.Key) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.by[pub]; c != nil {
		return *c
	}
	return Counts{}
}

// count adds to the total and to pub's counts. Under s.mu.
func (s *Sim) count(pub wgtypes.Key, f func(*Counts)) {
	f(&s.total)
	c := s.by[pub]
	if c == nil {
		c = new(Counts)
		s.by[pub] = c
	}
	f(c)
}

// Serve answers until ctx ends; it closes the sockets.
func (s *Sim) Serve(ctx context.Context) error {
	pc := ipv4.NewPacketConn(s.cfg.UDP)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		s.cfg.UDP.Close()
		if s.cfg.PQ != nil {
			s.cfg.PQ.Close()
		}
	}()
	if s.cfg.PQ != nil {
		go s.servePQ()
	}
	buf := make([]byte, 65536)
	out := make([]byte, 0, 65536)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if cm == nil {
			continue
		}
		dst, ok := netip.AddrFromSlice(cm.Dst)
		from, ok2 := src.(*net.UDPAddr)
		if !ok || !ok2 {
			continue
		}
		out = s.handle(dst.Unmap(), buf[:n], out[:0])
		if len(out) > 0 {
			_, _ = pc.WriteTo(out, &ipv4.ControlMessage{Src: cm.Dst}, from)
		}
	}
}

// node returns the simulated node at addr. Under s.mu.
func (s *Sim) node(addr netip.Addr) *node {
	if n := s.nodes[addr]; n != nil {
		return n
	}
	priv, ok := s.cfg.Node(addr)
	if !ok {
		return nil
	}
	n := &node{addr: addr, resp: wgnoise.NewResponder(priv), pairs: map[wgtypes.Key]*pair{}}
	s.nodes[addr] = n
	return n
}

func (n *node) pair(pub wgtypes.Key) *pair {
	p := n.pairs[pub]
	if p == nil {
		p = new(pair)
		p.cookie.Init(device.NoisePublicKey(pub))
		n.pairs[pub] = p
	}
	return p
}

// handle answers one datagram to the node at dst; it appends the answer
// (if any) to out.
func (s *Sim) handle(dst netip.Addr, b, out []byte) []byte {
	if len(b) < 4 {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch binary.LittleEndian.Uint32(b) {
	case device.MessageInitiationType:
		return s.initiation(dst, b, out)
	case device.MessageCookieReplyType:
		s.cookieReply(b)
	case device.MessageTransportType:
		return s.transport(b, out)
	}
	return out
}

func (s *Sim) initiation(dst netip.Addr, b, out []byte) []byte {
	n := s.node(dst)
	if n == nil {
		return out
	}
	in, ok := n.resp.Read(b)
	if !ok {
		s.total.Refused++
		return out
	}
	p := n.pair(in.Peer)
	var idx uint32
	for idx == 0 || s.sessions[idx] != nil {
		var r [4]byte
		_, _ = rand.Read(r[:])
		idx = binary.LittleEndian.Uint32(r[:])
	}
	resp := make([]byte, device.MessageResponseSize)
	sess, err := n.resp.Answer(in, p.psk, idx, resp)
	if err != nil || string(sess.Timestamp[:]) <= string(p.lastTS[:]) { // TAI64N: bytes order as time
		s.count(in.Peer, func(c *Counts) { c.Refused++ })
		return out
	}
	p.lastTS = sess.Timestamp
	p.cookie.AddMacs(resp)
	recv, _ := chacha20poly1305.New(sess.Recv[:])
	send, _ := chacha20poly1305.New(sess.Send[:])
	s.sessions[idx] = &session{n: n, peer: in.Peer, remote: in.Sender, recv: recv, send: send}
	p.sessions = append(p.sessions, idx)
	if len(p.sessions) > keepSessions {
		delete(s.sessions, p.sessions[0])
		p.sessions = p.sessions[1:]
	}
	s.count(in.Peer, func(c *Counts) { c.Handshakes++ })
	return append(out, resp...)
}

// cookieReply takes the cookie an agent under load sent for one of our
// responses: the next response to it carries mac2 (its initiator retries).
func (s *Sim) cookieReply(b []byte) {
	if len(b) != device.MessageCookieReplySize {
		return
	}
	var m device.MessageCookieReply
	m.Type = binary.LittleEndian.Uint32(b)
	m.Receiver = binary.LittleEndian.Uint32(b[4:])
	copy(m.Nonce[:], b[8:])
	copy(m.Cookie[:], b[8+len(m.Nonce):])
	sess := s.sessions[m.Receiver]
	if sess == nil {
		return
	}
	if sess.n.pairs[sess.peer].cookie.ConsumeReply(&m) {
		s.count(sess.peer, func(c *Counts) { c.CookieReplies++ })
	}
}

func (s *Sim) transport(b, out []byte) []byte {
	idx, ok := wgnoise.Receiver(b)
	if !ok {
		return out
	}
	sess := s.sessions[idx]
	if sess == nil {
		return out
	}
	pkt, _, err := wgnoise.Open(sess.recv, nil, b)
	if err != nil {
		return out
	}
	if len(pkt) == 0 {
		s.count(sess.peer, func(c *Counts) { c.Keepalives++ })
		return out
	}
	reply := EchoReply(pkt)
	if reply == nil {
		return out
	}
	s.count(sess.peer, func(c *Counts) { c.Echoes++ })
	out = wgnoise.Seal(out, sess.send, sess.remote, sess.counter, reply)
	sess.counter++
	return out
}
