package labtest

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// Stream is one long TCP connection from a pod to a pod on another node;
// the receiver records the longest pause between two reads.
type Stream struct {
	Bytes atomic.Int64
	Mu    sync.Mutex
	Last  time.Time
	Gap   time.Duration
	GapAt time.Time    // when the longest pause ended
	Err   atomic.Value // first write or read error
	Stop  chan struct{}
}

func StartStream(t *testing.T, from, to *netlab.Pod) *Stream {
	t.Helper()
	return StartStreamEvery(t, from, to, time.Millisecond)
}

// StartStreamEvery is StartStream writing 16 KiB every interval (1 ms:
// ~16 MB/s).
func StartStreamEvery(t *testing.T, from, to *netlab.Pod, interval time.Duration) *Stream {
	t.Helper()
	s := &Stream{Stop: make(chan struct{}), Last: time.Now()}
	var ln net.Listener
	if err := to.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":9100")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			s.Err.Store(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			now := time.Now()
			s.Mu.Lock()
			if d := now.Sub(s.Last); d > s.Gap {
				s.Gap, s.GapAt = d, now
			}
			s.Last = now
			s.Mu.Unlock()
			s.Bytes.Add(int64(n))
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.Err.Store(err)
				}
				return
			}
		}
	}()
	var c net.Conn
	if err := from.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(to.Addr(false), 9100).String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer c.Close()
		chunk := make([]byte, 16<<10)
		for {
			select {
			case <-s.Stop:
				return
			default:
			}
			_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				s.Err.Store(err)
				return
			}
			time.Sleep(interval) // a steady stream, not a benchmark
		}
	}()
	t.Cleanup(func() { close(s.Stop) })
	return s
}

// Across runs fn and returns the longest pause the stream had from its
// start until it has carried 4 MB more after fn returned.
func (s *Stream) Across(t *testing.T, what string, fn func()) time.Duration {
	t.Helper()
	s.Mu.Lock()
	s.Gap, s.Last = 0, time.Now()
	s.Mu.Unlock()
	fn()
	after := s.Bytes.Load()
	Eventually(t, 30*time.Second, "the stream flows again after "+what, func() bool {
		return s.Bytes.Load() > after+4<<20
	})
	if err, _ := s.Err.Load().(error); err != nil {
		t.Fatalf("the stream broke across %s: %v", what, err)
	}
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return s.Gap
}

// StartBinary starts n's agent from another binary (an upgrade).
func (c *Cluster) StartBinary(n *netlab.Node, bin string) {
	c.T.Helper()
	p, err := n.Start(bin, c.AgentArgs(n)...)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Agents[n.Name] = p
}
