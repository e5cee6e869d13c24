// Package pq agrees a post-quantum preshared key between two WireGuard
// peers: a fresh ML-KEM-768 key pair per exchange, authenticated by the two
// peers' static WireGuard (X25519) keys.
//
// The exchange runs over one TCP connection from the initiator I to the
// responder R:
//
//	m1  I→R  magic | pubI | pubR | nonce | ek (ephemeral ML-KEM-768)  | mac1
//	m2  R→I  ok | ct (encapsulated to ek)                             | mac2
//	m3  I→R  confirm (proves I derived the same secret)
//	m4  R→I  done (R has installed the key)                           | mac4
//
// mac1, mac2 and mac4 are HMAC-SHA256 under a key derived from
// X25519(own private, peer public): only the holders of the two WireGuard
// private keys can compute it, so neither a gossip-key holder nor the API
// server can stand in for a node, and a substituted ML-KEM key is refused.
// The preshared key is HKDF-SHA256 over the ML-KEM shared secret, salted
// with the hash of m1 and m2 (both public keys, both nonces, ek and ct):
//
//	psk = HKDF(ss, SHA256(m1 ‖ m2), "weft psk v1")
//
// Recording the exchange does not help a future quantum attacker: the
// secret rests on ML-KEM, and the decapsulation key never leaves the
// initiator's memory (a new one per exchange). The X25519 part only
// authenticates, which matters now, not later.
//
// The nonce starts with I's clock (Unix milliseconds, 8 bytes, big-endian)
// and goes on with 24 random bytes. R takes an m1 only if that time is
// within MaxSkew of its own clock and its nonce is not one R has taken
// before (Replays remembers them for twice MaxSkew): a recorded m1 sent
// again is refused before it can hold the pair (it could never finish
// the exchange, but each replay used to hold the pair for Timeout). An
// older initiator's random nonce reads as a time far off and is refused;
// an older responder reads the new nonce as random, so an upgraded node
// still agrees keys with older ones when it initiates.
//
// Errors R meets before m1 is authenticated (and fresh) wrap
// ErrUnauthenticated: anyone who reaches the port can cause them, so they
// must cost the pair nothing.
//
// R installs the key before it sends m4; I installs it after reading m4. A
// connection lost between the two leaves the pair with different keys for
// the moment I retries (its session keys from before stay valid meanwhile).
package pq

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const (
	magic     = "weftpq\x00\x01"
	nonceSize = 32
	macSize   = sha256.Size
	// Message sizes: every message has a fixed length, so a reader never
	// allocates more than one of these.
	m1Size = len(magic) + 2*wgtypes.KeyLen + nonceSize + mlkem.EncapsulationKeySize768 + macSize
	m2Size = 1 + mlkem.CiphertextSize768 + macSize
	m3Size = macSize
	m4Size = 1 + macSize

	statusOK      byte = 1
	statusBusy    byte = 2 // R is itself initiating to I and has the lower key
	statusRefused byte = 3 // R does not know I, or mac1 is wrong

	// Timeout bounds one whole exchange.
	Timeout = 5 * time.Second
	// FirstMessageTimeout bounds the wait for m1 after R accepts: an
	// initiator sends it at once, so a connection that sends nothing holds
	// a slot this long, not Timeout.
	FirstMessageTimeout = time.Second
	// ConfirmTimeout bounds R's wait for m3 after it sent m2: I answers
	// after one decapsulation (well under a millisecond) and a round trip.
	ConfirmTimeout = 2 * time.Second
	// MaxSkew is how far an m1's time may be from R's clock.
	MaxSkew = 60 * time.Second
)

// WireBytes is what one exchange sends, both directions (TCP/IP headers
// not counted).
const WireBytes = m1Size + m2Size + m3Size + m4Size

// Errors an exchange ends with; Reason names them for metrics.
var (
	ErrBusy      = errors.New("peer is exchanging with us itself")
	ErrRefused   = errors.New("peer refused the exchange (it does not know this node's key)")
	ErrAuth      = errors.New("authentication failed: the other end does not hold the peer's WireGuard key")
	ErrUnknown   = errors.New("unknown peer")
	ErrProtocol  = errors.New("malformed message")
	ErrNotForUs  = errors.New("exchange addressed to another key")
	ErrLowOrder  = errors.New("peer public key is not usable for X25519")
	ErrReplay    = errors.New("first message is not fresh (replayed, or the clocks differ by more than a minute)")
	errShortRead = errors.New("connection closed mid-message")

	// ErrUnauthenticated wraps every error R meets before m1 is known to
	// come from the peer it names, now.
	ErrUnauthenticated = errors.New("unauthenticated")
)

func unauthenticated(err error) error { return fmt.Errorf("%w: %w", ErrUnauthenticated, err) }

// Reason is a short label for err, for metrics: auth, refused, busy,
// unknown-peer, replay, protocol, or io.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrNotForUs), errors.Is(err, ErrLowOrder):
		return "auth"
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrUnknown):
		return "unknown-peer"
	case errors.Is(err, ErrReplay):
		return "replay"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	default:
		return "io"
	}
}

// Identity is a node's WireGuard key as the exchange uses it. It keeps
// each peer's static X25519 secret, so an exchange costs no scalar
// multiplication after the first with that peer (they were most of its
// CPU).
type Identity struct {
	priv wgtypes.Key
	pub  wgtypes.Key
	sk   *ecdh.PrivateKey

	mu    sync.Mutex
	cache map[wgtypes.Key][]byte // peer public key -> X25519 shared secret
}

// maxCached bounds the cache (peers come and go; keys rotate).
const maxCached = 4096

// NewIdentity prepares priv for exchanges.
func NewIdentity(priv wgtypes.Key) (*Identity, error) {
	sk, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return nil, err
	}
	var pub wgtypes.Key
	copy(pub[:], sk.PublicKey().Bytes())
	return &Identity{priv: priv, pub: pub, sk: sk, cache: map[wgtypes.Key][]byte{}}, nil
}

// PublicKey is the identity's WireGuard public key.
func (id *Identity) PublicKey() wgtypes.Key { return id.pub }

func (id *Identity) shared(peer wgtypes.Key) ([]byte, error) {
	id.mu.Lock()
	ss, ok := id.cache[peer]
	id.mu.Unlock()
	if ok {
		return ss, nil
	}
	pk, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, ErrLowOrder
	}
	ss, err = id.sk.ECDH(pk)
	if err != nil {
		return nil, ErrLowOrder // a low-order point gives the all-zero secret
	}
	id.mu.Lock()
	if len(id.cache) >= maxCached {
		clear(id.cache)
	}
	id.cache[peer] = ss
	id.mu.Unlock()
	return ss, nil
}

// authKey is the MAC key of a pair: both ends compute the same X25519
// shared secret from their own private and the other's public key.
func authKey(id *Identity, peerPub wgtypes.Key, pubI, pubR wgtypes.Key) ([]byte, error) {
	ss, err := id.shared(peerPub)
	if err != nil {
		return nil, err
	}
	return hkdf.Key(sha256.New, ss, append(pubI[:], pubR[:]...), "weft pq auth v1", 32)
}

func mac(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// derive returns the preshared key and the key-confirmation value of one
// exchange from its ML-KEM secret and transcript (m1 and m2).
func derive(ss, m1, m2 []byte) (psk wgtypes.Key, confirm []byte, err error) {
	salt := sha256.Sum256(append(append([]byte{}, m1...), m2...))
	k, err := hkdf.Key(sha256.New, ss, salt[:], "weft psk v1", wgtypes.KeyLen)
	if err != nil {
		return psk, nil, err
	}
	copy(psk[:], k)
	ck, err := hkdf.Key(sha256.New, ss, salt[:], "weft psk confirm v1", 32)
	if err != nil {
		return psk, nil, err
	}
	return psk, mac(ck, m1, m2), nil
}

// Initiate runs the initiator's side on conn: self is this node's
// identity, peer the responder's public key. It returns the agreed key once
// the responder has installed it. The caller sets conn's deadline.
func Initiate(conn io.ReadWriter, self *Identity, peer wgtypes.Key) (wgtypes.Key, error) {
	var zero wgtypes.Key
	pub := self.PublicKey()
	ak, err := authKey(self, peer, pub, peer)
	if err != nil {
		return zero, err
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return zero, err
	}
	m1 := firstMessage(pub, peer, ak, dk.EncapsulationKey().Bytes(), time.Now())
	if _, err := conn.Write(m1); err != nil {
		return zero, err
	}

	m2 := make([]byte, m2Size)
	if err := readFull(conn, m2[:1]); err != nil {
		return zero, err
	}
	switch m2[0] {
	case statusOK:
	case statusBusy:
		return zero, ErrBusy
	case statusRefused:
		return zero, ErrRefused
	default:
		return zero, ErrProtocol
	}
	if err := readFull(conn, m2[1:]); err != nil {
		return zero, err
	}
	body := m2[:m2Size-macSize]
	if !hmac.Equal(m2[len(body):], mac(ak, m1, body)) {
		return zero, ErrAuth
	}
	ss, err := dk.Decapsulate(m2[1:len(body)])
	if err != nil {
		return zero, ErrProtocol
	}
	psk, confirm, err := derive(ss, m1, m2)
	if err != nil {
		return zero, err
	}
	if _, err := conn.Write(confirm); err != nil {
		return zero, err
	}
	m4 := make([]byte, m4Size)
	if err := readFull(conn, m4); err != nil {
		return zero, err
	}
	if m4[0] != statusOK || !hmac.Equal(m4[1:], mac(ak, m1, m2, confirm, []byte("done"))) {
		return zero, ErrAuth
	}
	return psk, nil
}

// firstMessage is m1 from pub to peer, sent at sent, MACed under ak.
func firstMessage(pub, peer wgtypes.Key, ak, ek []byte, sent time.Time) []byte {
	m1 := make([]byte, 0, m1Size)
	m1 = append(m1, magic...)
	m1 = append(m1, pub[:]...)
	m1 = append(m1, peer[:]...)
	nonce := make([]byte, nonceSize)
	binary.BigEndian.PutUint64(nonce, uint64(sent.UnixMilli()))
	rand.Read(nonce[8:])
	m1 = append(m1, nonce...)
	m1 = append(m1, ek...)
	return append(m1, mac(ak, m1)...)
}

func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errShortRead
	}
	return err
}

// refuse tells the initiator why the exchange ends; the connection closes
// after it either way, so a failed write changes nothing.
func refuse(conn io.Writer, status byte) {
	_, _ = conn.Write([]byte{status})
}
