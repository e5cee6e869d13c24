package pq

import (
	"errors"
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(t testing.TB) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// run performs one exchange over an in-memory connection: i initiates
// (believing the responder's key is peer), r answers as responderKey.
func run(t testing.TB, i, peer, responderKey wgtypes.Key, known, busy bool) (pi, pr wgtypes.Key, installed bool, ei, er error) {
	a, b := net.Pipe()
	defer a.Close()
	r := &Responder{
		Self:  func() wgtypes.Key { return responderKey },
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
	pi, ei = Initiate(a, i, peer)
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
		Self:    func() wgtypes.Key { return target },
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
	go func() { Initiate(a, priv, peer); a.Close() }()
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

// FuzzRespond: any bytes from the network end in an error or a completed
// exchange, never a panic, and never an installed key without the MAC.
func FuzzRespond(f *testing.F) {
	self := key(f)
	f.Add(forgedM1(f, key(f), key(f).PublicKey(), self.PublicKey()))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		r := &Responder{
			Self:    func() wgtypes.Key { return self },
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
