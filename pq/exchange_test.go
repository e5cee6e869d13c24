package pq

import (
	"crypto/mlkem"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(t testing.TB) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ident(t testing.TB, k wgtypes.Key) *Identity {
	id, err := NewIdentity(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// run performs one exchange over an in-memory connection: i initiates
// (believing the responder's key is peer), r answers as responderKey.
func run(t testing.TB, i, peer, responderKey wgtypes.Key, known, busy bool) (pi, pr wgtypes.Key, installed bool, ei, er error) {
	a, b := net.Pipe()
	defer a.Close()
	r := &Responder{
		Self:  func() *Identity { return ident(t, responderKey) },
		Known: func(wgtypes.Key) bool { return known },
		Busy:  func(wgtypes.Key) bool { return busy },
		Install: func(_, psk wgtypes.Key) error {
			installed = true
			return nil
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.Close()
		_, pr, er = r.Respond(b)
	}()
	pi, ei = Initiate(a, ident(t, i), peer)
	a.Close()
	<-done
	return
}

func TestExchangeAgreesAndIsFresh(t *testing.T) {
	i, r := key(t), key(t)
	p1, p2, installed, ei, er := run(t, i, r.PublicKey(), r, true, false)
	if ei != nil || er != nil {
		t.Fatalf("exchange: initiator %v, responder %v", ei, er)
	}
	if p1 != p2 || p1 == (wgtypes.Key{}) || !installed {
		t.Fatalf("keys differ or are empty: %v %v installed=%v", p1, p2, installed)
	}
	p3, _, _, _, _ := run(t, i, r.PublicKey(), r, true, false)
	if p3 == p1 {
		t.Fatal("a second exchange between the same pair gave the same key")
	}
}

// TestImpostorGetsNoKey: an initiator without the claimed node's private
// key (it holds only the public keys, as a gossip-key holder or the API
// server would) is refused before anything is installed, and a responder
// with the wrong private key cannot answer.
func TestImpostorGetsNoKey(t *testing.T) {
	victim, target, rogue := key(t), key(t), key(t)
	// The rogue claims the victim's public key but signs with its own.
	a, b := net.Pipe()
	installed := false
	r := &Responder{
		Self:    func() *Identity { return ident(t, target) },
		Known:   func(pub wgtypes.Key) bool { return pub == victim.PublicKey() },
		Busy:    func(wgtypes.Key) bool { return false },
		Install: func(_, _ wgtypes.Key) error { installed = true; return nil },
	}
	errc := make(chan error, 1)
	go func() { _, _, err := r.Respond(b); b.Close(); errc <- err }()
	m1 := forgedM1(t, rogue, victim.PublicKey(), target.PublicKey())
	a.Write(m1)
	reply := make([]byte, 1)
	a.Read(reply)
	a.Close()
	if err := <-errc; !errors.Is(err, ErrAuth) || installed || reply[0] != statusRefused {
		t.Fatalf("forged m1: err %v, installed %v, reply %d", err, installed, reply[0])
	}

	// A responder without the target's key (a rogue answering in its
	// place) cannot produce mac2.
	_, _, installed2, ei, _ := run(t, victim, target.PublicKey(), rogue, true, false)
	if ei == nil || installed2 {
		t.Fatalf("a responder without the key completed the exchange (initiator err %v, installed %v)", ei, installed2)
	}
}

// forgedM1 builds m1 as Initiate would, but claiming pub while holding priv.
func forgedM1(t testing.TB, priv, pub, peer wgtypes.Key) []byte {
	a, b := net.Pipe()
	go func() { Initiate(a, ident(t, priv), peer); a.Close() }()
	m1 := make([]byte, m1Size)
	if err := readFull(b, m1); err != nil {
		t.Fatal(err)
	}
	b.Close()
	copy(m1[len(magic):], pub[:])
	return m1
}

func TestExchangeRefusals(t *testing.T) {
	i, r := key(t), key(t)
	if _, _, inst, ei, _ := run(t, i, r.PublicKey(), r, false, false); !errors.Is(ei, ErrRefused) || inst {
		t.Errorf("unknown initiator: %v installed=%v", ei, inst)
	}
	if _, _, inst, ei, _ := run(t, i, r.PublicKey(), r, true, true); !errors.Is(ei, ErrBusy) || inst {
		t.Errorf("busy responder: %v installed=%v", ei, inst)
	}
	other := key(t)
	if _, _, inst, ei, er := run(t, i, other.PublicKey(), r, true, false); !errors.Is(ei, ErrRefused) || !errors.Is(er, ErrNotForUs) || inst {
		t.Errorf("addressed to another key: %v / %v installed=%v", ei, er, inst)
	}
}

// respondTo answers m1 (and nothing more) as r; busy reports whether r asked
// whether the pair was busy, i.e. whether m1 got past the checks of its
// authenticity and freshness.
func respondTo(t *testing.T, self wgtypes.Key, known wgtypes.Key, replays *Replays, m1 []byte) (busy bool, err error) {
	a, b := net.Pipe()
	r := &Responder{
		Self:    func() *Identity { return ident(t, self) },
		Known:   func(pub wgtypes.Key) bool { return pub == known },
		Busy:    func(wgtypes.Key) bool { busy = true; return true },
		Install: func(_, _ wgtypes.Key) error { t.Fatal("installed a key"); return nil },
		Replays: replays,
	}
	go func() { a.Write(m1); io.Copy(io.Discard, a) }()
	_, _, err = r.Respond(b)
	b.Close()
	a.Close()
	return busy, err
}

// TestReplayedOrStaleFirstMessageIsRefused: a recorded m1 sent again, or an
// authentic m1 made more than MaxSkew ago (or ahead), is refused before it
// can hold the pair, as unauthenticated input; a fresh one gets through.
func TestReplayedOrStaleFirstMessageIsRefused(t *testing.T) {
	i, r := key(t), key(t)
	ak, err := authKey(ident(t, i), r.PublicKey(), i.PublicKey(), r.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	ek := dk.EncapsulationKey().Bytes()
	var replays Replays
	m1 := firstMessage(i.PublicKey(), r.PublicKey(), ak, ek, time.Now())
	if busy, err := respondTo(t, r, i.PublicKey(), &replays, m1); !busy {
		t.Fatalf("a fresh m1 was refused: %v", err)
	}
	for range 3 {
		if busy, err := respondTo(t, r, i.PublicKey(), &replays, m1); busy || !errors.Is(err, ErrReplay) || !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("a replayed m1: err %v, reached the pair %v", err, busy)
		}
	}
	for _, off := range []time.Duration{-MaxSkew - time.Second, MaxSkew + time.Second} {
		old := firstMessage(i.PublicKey(), r.PublicKey(), ak, ek, time.Now().Add(off))
		if busy, err := respondTo(t, r, i.PublicKey(), &replays, old); busy || !errors.Is(err, ErrReplay) {
			t.Fatalf("an m1 made %v from now: err %v, reached the pair %v", off, err, busy)
		}
	}
	// Forged MACs are unauthenticated too (they must cost the pair nothing).
	forged := forgedM1(t, key(t), i.PublicKey(), r.PublicKey())
	if busy, err := respondTo(t, r, i.PublicKey(), &replays, forged); busy || !errors.Is(err, ErrAuth) || !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a forged m1: err %v, reached the pair %v", err, busy)
	}
}

// TestReplaysAreBounded: the cache never holds more than MaxReplays, and
// refuses (fails closed) rather than forget a nonce still in its window.
func TestReplaysAreBounded(t *testing.T) {
	var r Replays
	now := time.Now()
	nonce := make([]byte, nonceSize)
	binary.BigEndian.PutUint64(nonce, uint64(now.UnixMilli()))
	for n := range MaxReplays {
		binary.BigEndian.PutUint64(nonce[8:], uint64(n))
		if !r.take(nonce, now) {
			t.Fatalf("nonce %d refused below the bound", n)
		}
	}
	binary.BigEndian.PutUint64(nonce[8:], uint64(MaxReplays))
	if r.take(nonce, now) || len(r.seen) != MaxReplays {
		t.Fatalf("over the bound: took a nonce, %d remembered", len(r.seen))
	}
	later := now.Add(2*MaxSkew + time.Second)
	binary.BigEndian.PutUint64(nonce, uint64(later.UnixMilli()))
	if !r.take(nonce, later) || len(r.seen) != 1 {
		t.Fatalf("after the window: %d remembered, want 1", len(r.seen))
	}
}

// FuzzRespond: any bytes from the network end in an error or a completed
// exchange, never a panic, and never an installed key without the MAC.
func FuzzRespond(f *testing.F) {
	self := key(f)
	selfID := ident(f, self)
	f.Add(forgedM1(f, key(f), key(f).PublicKey(), self.PublicKey()))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		r := &Responder{
			Self:    func() *Identity { return selfID },
			Known:   func(wgtypes.Key) bool { return true },
			Busy:    func(wgtypes.Key) bool { return false },
			Install: func(_, _ wgtypes.Key) error { t.Fatal("installed a key from unauthenticated input"); return nil },
		}
		go func() {
			a.Write(in)
			a.Close()
		}()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		r.Respond(b)
		b.Close()
	})
}

// BenchmarkExchange is the CPU of one whole exchange, both ends.
func BenchmarkExchange(b *testing.B) {
	i, r := key(b), key(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ei, er := run(b, i, r.PublicKey(), r, true, false); ei != nil || er != nil {
			b.Fatal(ei, er)
		}
	}
	b.ReportMetric(float64(WireBytes), "wire-bytes/op")
}

// BenchmarkRotationRound100 is one rotation round of a node with 100
// peers: 100 exchanges over loopback TCP, both ends in this process (the
// real responder path: accept, read, verify, encapsulate, confirm). It
// reports the CPU time of the round (user+system, both ends) and the bytes
// exchanged.
func BenchmarkRotationRound100(b *testing.B) {
	const peers = 100
	self := key(b)
	type resp struct {
		pub wgtypes.Key
		ln  net.Listener
	}
	var rs []resp
	for range peers {
		k := key(b)
		kid := ident(b, k)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		r := &Responder{
			Self:    func() *Identity { return kid },
			Known:   func(pub wgtypes.Key) bool { return pub == self.PublicKey() },
			Busy:    func(wgtypes.Key) bool { return false },
			Install: func(_, _ wgtypes.Key) error { return nil },
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				r.Respond(c)
				c.Close()
			}
		}()
		rs = append(rs, resp{k.PublicKey(), ln})
	}
	selfID := ident(b, self)
	var cpu time.Duration
	for b.Loop() {
		before := cpuTime()
		for _, r := range rs {
			c, err := net.Dial("tcp", r.ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Initiate(c, selfID, r.pub); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		cpu += cpuTime() - before
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/round")
	b.ReportMetric(float64(peers*WireBytes), "wire-bytes/round")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
