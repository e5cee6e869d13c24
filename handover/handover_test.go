package handover

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// runningAgent is what a running agent has here: its handover socket in a
// state directory, and a listening socket to offer. Both close with t.
func runningAgent(t *testing.T) (dir string, l *Listener, ln *net.TCPListener) {
	t.Helper()
	dir = t.TempDir()
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dir, l, ln
}

// predecessor runs one Accept/Offer on l, offering a TCP listener, and
// reports what happened on the returned channel: nil after take (then it
// sends released with state), or the error.
func predecessor(t *testing.T, l *Listener, ln *net.TCPListener, state any) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		req, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		f, err := ln.File()
		if err != nil {
			done <- err
			return
		}
		if err := req.Offer([]File{{Name: "http", File: f}}, "prepare"); err != nil {
			req.Close()
			done <- err
			return
		}
		done <- req.Released(state)
	}()
	return done
}

// TestHandOverAListeningSocket: a listening socket crosses from one
// process's handover to the other's, with the state; a connection made
// before the take is accepted by the successor: nothing in the socket's
// queue is lost.
func TestHandOverAListeningSocket(t *testing.T) {
	dir, l, ln := runningAgent(t)
	done := predecessor(t, l, ln, map[string]int{"peers": 3})

	s, err := Dial(context.Background(), dir, []int{Version})
	if err != nil || s == nil {
		t.Fatalf("Dial = %v, %v; want an offer", s, err)
	}
	defer s.Close()
	got, err := s.Listener("http")
	if err != nil || got == nil {
		t.Fatalf("Listener(http) = %v, %v", got, err)
	}
	defer got.Close()
	if s.File("tun") != nil {
		t.Error("a descriptor that was not offered came back")
	}
	if string(s.Offered) != `"prepare"` {
		t.Errorf("offered state = %s", s.Offered)
	}
	// A client connects while the old agent still holds the socket.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := s.Take(5 * time.Second)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("predecessor: %v", err)
	}
	ln.Close() // the old agent lets go of its copy
	var st map[string]int
	if err := json.Unmarshal(raw, &st); err != nil || st["peers"] != 3 {
		t.Fatalf("state = %s (%v); want peers 3", raw, err)
	}
	got.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	sc, err := got.Accept()
	if err != nil {
		t.Fatalf("the successor did not get the connection queued before the take: %v", err)
	}
	defer sc.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := os.Stat(l.path); err != nil {
		t.Error("the old agent removed the socket file a successor will listen on")
	}
}

// TestUnknownVersionIsRefused: a successor speaking only a version this
// build does not know is refused with the reason, and gets nothing.
func TestUnknownVersionIsRefused(t *testing.T) {
	dir, l, ln := runningAgent(t)
	done := predecessor(t, l, ln, nil)
	s, err := Dial(context.Background(), dir, []int{Version + 98})
	var ref *Refused
	if s != nil || !errors.As(err, &ref) {
		t.Fatalf("Dial = %v, %v; want refused", s, err)
	}
	if err := <-done; !errors.As(err, &ref) {
		t.Fatalf("the running agent reported %v; want a refusal", err)
	}
	t.Logf("refused: %v", ref)
}

// TestNewestCommonVersion: the running agent takes the newest version both
// speak: this build's newest for a successor of this build, version 1 for
// one that speaks only that (a build before the port was shared).
func TestNewestCommonVersion(t *testing.T) {
	for _, c := range []struct {
		offer []int
		want  int
	}{{Versions, Version}, {[]int{1}, 1}, {[]int{7, 1}, 1}} {
		dir, l, ln := runningAgent(t)
		done := predecessor(t, l, ln, nil)
		s, err := Dial(context.Background(), dir, c.offer)
		if err != nil || s == nil {
			t.Fatalf("Dial(%v) = %v, %v; want an offer", c.offer, s, err)
		}
		if s.Version != c.want {
			t.Errorf("a successor speaking %v got version %d; want %d", c.offer, s.Version, c.want)
		}
		s.Close()
		<-done
	}
}

// TestAbortLeavesThePredecessorAsItWas: a successor that closes before
// take makes Offer fail (the old agent goes on), and the next successor is
// served.
func TestAbortLeavesThePredecessorAsItWas(t *testing.T) {
	dir, l, ln := runningAgent(t)
	done := predecessor(t, l, ln, nil)
	s, err := Dial(context.Background(), dir, []int{Version})
	if err != nil || s == nil {
		t.Fatalf("Dial = %v, %v", s, err)
	}
	s.Close()
	if err := <-done; err == nil {
		t.Fatal("Offer returned nil for a successor that never took over")
	}
	// The old agent still listens; a second successor gets the offer.
	done = predecessor(t, l, ln, "again")
	s, err = Dial(context.Background(), dir, []int{Version})
	if err != nil || s == nil {
		t.Fatalf("second Dial = %v, %v", s, err)
	}
	defer s.Close()
	if _, err := s.Take(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPredecessorGoneMidway: the old agent closing after the offer (it
// died) is ErrGone at Take, and nobody at all is (nil, nil).
func TestPredecessorGoneMidway(t *testing.T) {
	dir := t.TempDir()
	if s, err := Dial(context.Background(), dir, []int{Version}); s != nil || err != nil {
		t.Fatalf("Dial with nobody there = %v, %v; want nil, nil", s, err)
	}
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		req, err := l.Accept()
		if err != nil {
			return
		}
		_ = writeFrame(req.conn, message{Kind: kindOffer, Version: Version})
		req.Close() // dies before take
	}()
	s, err := Dial(context.Background(), dir, []int{Version})
	if err != nil || s == nil {
		t.Fatalf("Dial = %v, %v", s, err)
	}
	defer s.Close()
	if _, err := s.Take(5 * time.Second); !errors.Is(err, ErrGone) {
		t.Fatalf("Take = %v; want ErrGone", err)
	}
	l.Close()
	if s, err := Dial(context.Background(), dir, []int{Version}); s != nil || err != nil {
		t.Fatalf("Dial after the old agent closed = %v, %v; want nil, nil", s, err)
	}
}

// TestOversizedFrameIsRefused: a length over MaxFrame is an error before
// anything is allocated.
func TestOversizedFrameIsRefused(t *testing.T) {
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	go a.Write([]byte{0xff, 0xff, 0xff, 0xff})
	if _, err := readFrame(b, kindHello); err == nil {
		t.Fatal("a 4 GiB frame was accepted")
	}
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "handover")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	a, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, nil, err
	}
	b, err := ln.AcceptUnix()
	return a, b, err
}
