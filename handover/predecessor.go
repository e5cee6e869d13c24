package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// helloTimeout bounds how long a connection may take to say hello: the
// running agent serves one successor at a time.
const helloTimeout = 5 * time.Second

// takeTimeout bounds how long a successor may prepare between the offer
// and take (informers, caches): long enough for a slow API server, short
// enough that a successor that hangs does not hold the next one off long.
const takeTimeout = 2 * time.Minute

// Listener is the running agent's handover socket.
type Listener struct {
	ln         *net.UnixListener
	path       string
	handedOver atomic.Bool
}

// Listen opens <stateDir>/handover.sock, readable by root only, replacing a
// stale one.
func Listen(stateDir string) (*Listener, error) {
	path := filepath.Join(stateDir, Socket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	// The successor listens on the same path once it has taken over: the
	// old agent must not remove it then (Close does only without a handover).
	ln.SetUnlinkOnClose(false)
	return &Listener{ln: ln, path: path}, nil
}

// Close stops listening; the socket file goes too unless a successor took
// over (its own socket may have the name by then).
func (l *Listener) Close() error {
	err := l.ln.Close()
	if !l.handedOver.Load() {
		os.Remove(l.path)
	}
	return err
}

// Request is one successor as the running agent sees it, after its hello.
type Request struct {
	l       *Listener
	conn    *net.UnixConn
	Version int // the protocol both speak
}

// Refused is the running agent's answer to a successor that speaks none of
// its versions; the successor falls back to a plain restart.
type Refused struct{ Reason string }

func (r *Refused) Error() string { return "handover refused: " + r.Reason }

// Accept waits for a successor and reads its hello. A successor that
// speaks none of this build's versions is refused here (the error is a
// *Refused) and its connection closed.
func (l *Listener) Accept() (*Request, error) {
	c, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(helloTimeout))
	m, err := readFrame(c, kindHello)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handover hello: %w", err)
	}
	for _, v := range Versions {
		if slices.Contains(m.Versions, v) {
			return &Request{l: l, conn: c, Version: v}, nil
		}
	}
	ref := &Refused{Reason: fmt.Sprintf("this agent speaks handover versions %v, the successor %v", Versions, m.Versions)}
	_ = writeFrame(c, message{Kind: kindRefuse, Reason: ref.Reason})
	c.Close()
	return nil, ref
}

// File is a descriptor offered to the successor, by name.
type File struct {
	Name string
	File *os.File // a duplicate: Offer closes it once sent
}

// Offer sends the descriptors, with the state the successor prepares
// with, and waits for the successor to take them. It returns nil once the
// successor said take: the caller then lets go of the data plane and calls
// Released. Any error means the successor is gone or gave up; the caller
// goes on as before. Offer closes files.
func (r *Request) Offer(files []File, state any) error {
	defer func() {
		for _, f := range files {
			f.File.Close()
		}
	}()
	if len(files) > maxFiles {
		return fmt.Errorf("handover: %d descriptors, at most %d", len(files), maxFiles)
	}
	names := make([]string, len(files))
	fs := make([]*os.File, len(files))
	for i, f := range files {
		names[i], fs[i] = f.Name, f.File
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("handover state: %w", err)
	}
	_ = r.conn.SetDeadline(time.Now().Add(helloTimeout))
	if err := writeFrame(r.conn, message{Kind: kindOffer, Version: r.Version, Files: names, State: b}); err != nil {
		return fmt.Errorf("handover offer: %w", err)
	}
	if len(fs) > 0 {
		if err := writeFiles(r.conn, fs); err != nil {
			return fmt.Errorf("handover offer: %w", err)
		}
	}
	_ = r.conn.SetDeadline(time.Now().Add(takeTimeout))
	if _, err := readFrame(r.conn, kindTake); err != nil {
		return fmt.Errorf("handover: the successor did not take over: %w", err)
	}
	r.l.handedOver.Store(true)
	return nil
}

// Released sends the state the successor goes on with, after the caller
// let go of everything it offered, and closes the connection.
func (r *Request) Released(state any) error {
	defer r.conn.Close()
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("handover state: %w", err)
	}
	_ = r.conn.SetDeadline(time.Now().Add(helloTimeout))
	return writeFrame(r.conn, message{Kind: kindReleased, State: b})
}

// Close ends a request that was not taken.
func (r *Request) Close() error { return r.conn.Close() }
