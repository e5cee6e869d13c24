package pq

import (
	"bytes"
	"crypto/hmac"
	"crypto/mlkem"
	"fmt"
	"io"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Responder answers exchanges for one node (R in the package doc).
type Responder struct {
	// Self is this node's identity at the time of the exchange.
	Self func() *Identity
	// Known reports whether pub is a peer this node accepts an exchange
	// from (an accepted node, not an external peer).
	Known func(pub wgtypes.Key) bool
	// Busy reports whether this node is initiating an exchange with pub
	// itself and should win: the end with the lower key initiates, so a
	// crossed pair settles on one exchange.
	Busy func(pub wgtypes.Key) bool
	// Install sets the agreed key for pub; it returns once the device has it.
	Install func(pub wgtypes.Key, psk wgtypes.Key) error
	// Replays remembers the first messages taken (nil: none is refused
	// as a replay, only as stale).
	Replays *Replays
}

// deadliner is a connection whose deadlines Respond moves on (net.Conn).
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetDeadline(time.Time) error
}

// Respond runs the responder's side on conn. It returns the initiator's
// key and the installed preshared key, or why it refused. The caller sets
// conn's deadline.
func (r *Responder) Respond(conn io.ReadWriter) (wgtypes.Key, wgtypes.Key, error) {
	var zero wgtypes.Key
	m1 := make([]byte, m1Size)
	if err := readFull(conn, m1); err != nil {
		return zero, zero, unauthenticated(err)
	}
	if !bytes.Equal(m1[:len(magic)], []byte(magic)) {
		return zero, zero, unauthenticated(ErrProtocol)
	}
	var pubI, pubR wgtypes.Key
	off := len(magic)
	copy(pubI[:], m1[off:])
	copy(pubR[:], m1[off+wgtypes.KeyLen:])
	self := r.Self()
	if pubR != self.PublicKey() {
		refuse(conn, statusRefused)
		return pubI, zero, unauthenticated(ErrNotForUs)
	}
	if !r.Known(pubI) {
		refuse(conn, statusRefused)
		return pubI, zero, unauthenticated(ErrUnknown)
	}
	ak, err := authKey(self, pubI, pubI, pubR)
	if err != nil {
		refuse(conn, statusRefused)
		return pubI, zero, unauthenticated(err)
	}
	body := m1[:m1Size-macSize]
	if !hmac.Equal(m1[len(body):], mac(ak, body)) {
		refuse(conn, statusRefused)
		return pubI, zero, unauthenticated(ErrAuth)
	}
	nonceOff := off + 2*wgtypes.KeyLen
	if !r.Replays.take(m1[nonceOff:nonceOff+nonceSize], time.Now()) {
		refuse(conn, statusRefused)
		return pubI, zero, unauthenticated(ErrReplay)
	}
	if d, ok := conn.(deadliner); ok {
		_ = d.SetDeadline(time.Now().Add(Timeout)) // m1 came in time; the exchange may take its full time
	}
	if r.Busy(pubI) {
		refuse(conn, statusBusy)
		return pubI, zero, ErrBusy
	}
	ekOff := off + 2*wgtypes.KeyLen + nonceSize
	ek, err := mlkem.NewEncapsulationKey768(m1[ekOff : ekOff+mlkem.EncapsulationKeySize768])
	if err != nil {
		refuse(conn, statusRefused)
		return pubI, zero, ErrProtocol
	}
	ss, ct := ek.Encapsulate()
	m2 := make([]byte, 0, m2Size)
	m2 = append(m2, statusOK)
	m2 = append(m2, ct...)
	m2 = append(m2, mac(ak, m1, m2)...)
	psk, confirm, err := derive(ss, m1, m2)
	if err != nil {
		return pubI, zero, err
	}
	if _, err := conn.Write(m2); err != nil {
		return pubI, zero, err
	}
	if d, ok := conn.(deadliner); ok {
		_ = d.SetReadDeadline(time.Now().Add(ConfirmTimeout))
	}
	got := make([]byte, m3Size)
	if err := readFull(conn, got); err != nil {
		return pubI, zero, err
	}
	if !hmac.Equal(got, confirm) {
		return pubI, zero, ErrAuth
	}
	if err := r.Install(pubI, psk); err != nil {
		return pubI, zero, fmt.Errorf("install: %w", err)
	}
	m4 := append([]byte{statusOK}, mac(ak, m1, m2, confirm, []byte("done"))...)
	if _, err := conn.Write(m4); err != nil {
		return pubI, psk, err
	}
	return pubI, psk, nil
}
