package handover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrGone: the running agent went away in the middle of a handover (it
// died, or handed over to another successor first). What it held is free
// again, or about to be.
var ErrGone = errors.New("handover: the running agent went away")

// Successor is the new agent's side of a handover, from the offer to take.
type Successor struct {
	conn    *net.UnixConn
	Version int
	Offered json.RawMessage     // the state offered with the descriptors
	files   map[string]*os.File // offered and not yet claimed
}

// Dial asks the agent running on stateDir to hand over. It returns nil and
// no error when no agent answers there (no socket, or nobody listening):
// start as usual. A *Refused error means the running agent speaks none of
// versions; ErrGone, that it went away before offering.
func Dial(ctx context.Context, stateDir string, versions []int) (*Successor, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(stateDir, Socket))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	uc := c.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			uc.Close()
		}
	}()
	_ = uc.SetDeadline(time.Now().Add(takeTimeout)) // the running agent may be busy with another successor
	if err := writeFrame(uc, message{Kind: kindHello, Versions: versions}); err != nil {
		return nil, ErrGone
	}
	m, err := readFrame(uc, kindOffer, kindRefuse)
	switch {
	case err != nil && m.Kind == "":
		return nil, ErrGone // closed or reset: it went away, or chose another successor
	case err != nil:
		return nil, err
	case m.Kind == kindRefuse:
		return nil, &Refused{Reason: m.Reason}
	}
	if len(m.Files) > maxFiles {
		return nil, fmt.Errorf("handover: %d descriptors offered, at most %d", len(m.Files), maxFiles)
	}
	s := &Successor{conn: uc, Version: m.Version, Offered: m.State, files: map[string]*os.File{}}
	if len(m.Files) > 0 {
		fs, err := readFiles(uc, m.Files)
		if err != nil {
			return nil, err
		}
		for i, f := range fs {
			if old := s.files[m.Files[i]]; old != nil {
				old.Close()
			}
			s.files[m.Files[i]] = f
		}
	}
	ok = true
	return s, nil
}

// File claims the named descriptor (nil if it was not offered); the caller
// owns it from now on.
func (s *Successor) File(name string) *os.File {
	f := s.files[name]
	delete(s.files, name)
	return f
}

// Listener claims the named listening socket (nil if it was not offered).
func (s *Successor) Listener(name string) (net.Listener, error) {
	f := s.File(name)
	if f == nil {
		return nil, nil
	}
	defer f.Close() // FileListener holds its own duplicate
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("handover %s socket: %w", name, err)
	}
	return ln, nil
}

// Take tells the running agent to let go and waits until it has: once it
// answers, it no longer reads the TUN nor the WireGuard socket. It returns
// the state the old agent left; ErrGone when it went away first (what it
// held is free: start without its state).
func (s *Successor) Take(timeout time.Duration) (json.RawMessage, error) {
	_ = s.conn.SetDeadline(time.Now().Add(timeout))
	if err := writeFrame(s.conn, message{Kind: kindTake}); err != nil {
		return nil, ErrGone
	}
	m, err := readFrame(s.conn, kindReleased)
	if err != nil && m.Kind == "" {
		return nil, ErrGone
	}
	if err != nil {
		return nil, err
	}
	return m.State, nil
}

// Close ends the handover: before Take, it is an abort (the running agent
// goes on as before). Descriptors not claimed are closed.
func (s *Successor) Close() error {
	for _, f := range s.files {
		f.Close()
	}
	clear(s.files)
	return s.conn.Close()
}
