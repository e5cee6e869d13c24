package handover

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Versions is every protocol this build speaks, newest first: a successor
// offers them all, a running agent takes the newest both speak.
var Versions = []int{2, 1}

const (
	// Socket is the handover socket's name in the state directory.
	Socket = "handover.sock"
	// Version is the newest protocol this build speaks: the messages below
	// and the meaning of the state the agent sends. Changing either takes a
	// new number (and, for a while, speaking the old one too: Versions).
	// 2: the old agent keeps the WireGuard port bound after released until
	// the successor has bound it beside it (SO_REUSEPORT); 1: it closes it
	// at released.
	Version = 2
	// MaxFrame bounds one message: the state of 5000 peers is well under it.
	MaxFrame = 16 << 20
	// maxFiles bounds the descriptors one offer carries.
	maxFiles = 16
)

// Message kinds.
const (
	kindHello    = "hello"
	kindRefuse   = "refuse"
	kindOffer    = "offer"
	kindTake     = "take"
	kindReleased = "released"
)

// message is every frame; which fields are set depends on Kind.
type message struct {
	Kind     string          `json:"kind"`
	Versions []int           `json:"versions,omitempty"` // hello: what the successor speaks
	Version  int             `json:"version,omitempty"`  // offer: the one chosen
	Reason   string          `json:"reason,omitempty"`   // refuse
	Files    []string        `json:"files,omitempty"`    // offer: the descriptors that follow, in order
	State    json.RawMessage `json:"state,omitempty"`    // released
}

func writeFrame(c *net.UnixConn, m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("handover %s message of %d bytes is over %d", m.Kind, len(b), MaxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = c.Write(buf)
	return err
}

// readFrame reads one message and checks its kind is one of want.
func readFrame(c *net.UnixConn, want ...string) (message, error) {
	var m message
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return m, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return m, fmt.Errorf("handover message of %d bytes is over %d", n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("handover message: %w", err)
	}
	for _, k := range want {
		if m.Kind == k {
			return m, nil
		}
	}
	return m, fmt.Errorf("handover: got %q, want %v", m.Kind, want)
}

// writeFiles sends the descriptors as one byte with SCM_RIGHTS.
func writeFiles(c *net.UnixConn, files []*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	_, _, err := c.WriteMsgUnix([]byte{'F'}, syscall.UnixRights(fds...), nil)
	return err
}

// readFiles receives n descriptors sent by writeFiles. The byte they ride
// on is read alone: on a stream socket the kernel does not merge it with
// the frames around it, since it carries rights.
func readFiles(c *net.UnixConn, names []string) ([]*os.File, error) {
	oob := make([]byte, syscall.CmsgSpace(maxFiles*4))
	var b [1]byte
	_, oobn, flags, _, err := c.ReadMsgUnix(b[:], oob)
	if err != nil {
		return nil, err
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		return nil, errors.New("handover: descriptors truncated")
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("handover: %w", err)
		}
		fds = append(fds, got...)
	}
	if len(fds) != len(names) {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("handover: %d descriptors offered, %d received", len(names), len(fds))
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		syscall.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), names[i])
	}
	return files, nil
}
