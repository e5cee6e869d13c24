// Package wgnoise is the responder's side of WireGuard's Noise IK
// handshake (WireGuard whitepaper, 5.4), as wireguard-go computes it:
// reading who sent a handshake initiation, and answering it with a
// response and the session's keys. The mesh reads initiators to wake
// resting peers; bench-scale's simulated nodes answer handshakes for
// thousands of keys in one process without a wireguard-go device each.
package wgnoise

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Offsets in the initiation (whitepaper 5.4.2); its type and size are
// wireguard-go's MessageInitiationType and MessageInitiationSize.
const (
	offSender    = 4
	offEphemeral = 8
	offStatic    = 40
	offTimestamp = 88
	// OffMAC1 is where an initiation's mac1 starts; mac2 follows it.
	OffMAC1 = 116
)

var (
	initialChainKey [blake2s.Size]byte
	initialHash     [blake2s.Size]byte
)

func init() {
	initialChainKey = blake2s.Sum256([]byte(device.NoiseConstruction))
	initialHash = mixHash(initialChainKey, []byte(device.WGIdentifier))
}

// Responder reads and answers initiations sent to one static key.
type Responder struct {
	priv    wgtypes.Key
	hash0   [blake2s.Size]byte // the handshake hash after the responder's key
	mac1Key [blake2s.Size]byte
}

// NewResponder returns the responder for the private key priv.
func NewResponder(priv wgtypes.Key) *Responder {
	pub := priv.PublicKey()
	r := &Responder{priv: priv, hash0: mixHash(initialHash, pub[:])}
	r.mac1Key = blake2s.Sum256(append([]byte(device.WGLabelMAC1), pub[:]...))
	return r
}

// Key is the responder's private key.
func (r *Responder) Key() wgtypes.Key { return r.priv }

// IsInitiation reports whether b has the shape of a handshake initiation.
func IsInitiation(b []byte) bool {
	return len(b) == device.MessageInitiationSize && binary.LittleEndian.Uint32(b) == device.MessageInitiationType
}

// Initiation is a handshake initiation read as far as its sender's key.
type Initiation struct {
	Peer      wgtypes.Key // the initiator's static key
	Sender    uint32      // the initiator's index for this handshake
	ephemeral [32]byte
	hash      [blake2s.Size]byte
	chainKey  [blake2s.Size]byte
	timestamp [12 + chacha20poly1305.Overhead]byte
}

// Initiator returns the static public key of the initiation b, when b is
// a well-formed initiation to this key: its mac1 checks and the key
// decrypts. It costs one X25519 and one AEAD open.
func (r *Responder) Initiator(b []byte) (wgtypes.Key, bool) {
	var in Initiation
	if !r.read(b, &in) {
		return wgtypes.Key{}, false
	}
	return in.Peer, true
}

// Read reads the initiation b as far as its sender's key (Initiator),
// keeping what Answer needs.
func (r *Responder) Read(b []byte) (*Initiation, bool) {
	in := new(Initiation)
	if !r.read(b, in) {
		return nil, false
	}
	return in, true
}

func (r *Responder) read(b []byte, in *Initiation) bool {
	if !IsInitiation(b) {
		return false
	}
	mac, _ := blake2s.New128(r.mac1Key[:])
	mac.Write(b[:OffMAC1])
	var sum [blake2s.Size]byte
	if subtle.ConstantTimeCompare(mac.Sum(sum[:0])[:16], b[OffMAC1:OffMAC1+16]) != 1 {
		return false
	}
	eph := b[offEphemeral:offStatic]
	h := mixHash(r.hash0, eph)
	var ck, key [blake2s.Size]byte
	device.KDF1(&ck, initialChainKey[:], eph)
	ss, err := curve25519.X25519(r.priv[:], eph)
	if err != nil { // a low-order point
		return false
	}
	device.KDF2(&ck, &key, ck[:], ss)
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(in.Peer[:0], nonce[:], b[offStatic:offTimestamp], h[:]); err != nil {
		return false
	}
	in.Sender = binary.LittleEndian.Uint32(b[offSender:])
	copy(in.ephemeral[:], eph)
	in.hash = mixHash(h, b[offStatic:offTimestamp])
	in.chainKey = ck
	copy(in.timestamp[:], b[offTimestamp:OffMAC1])
	return true
}

// ErrTimestamp is an initiation whose encrypted timestamp does not open
// under the two static keys (and the preshared key's absence from this
// step): it was not made by the holder of the initiator's private key.
var ErrTimestamp = errors.New("wgnoise: the initiation's timestamp does not open")

// Session is the pair of transport keys one handshake agreed, as the
// responder holds them.
type Session struct {
	Recv, Send [chacha20poly1305.KeySize]byte
	// Timestamp is the initiator's TAI64N timestamp (replay protection
	// is the caller's).
	Timestamp [12]byte
}

// Answer completes the handshake of in under preshared key psk: it
// checks the initiation's timestamp (which proves the initiator holds its
// private key), writes the response to resp (device.MessageResponseSize
// bytes; mac1 and mac2 are left zero for the caller, who knows the
// cookie) with localIndex as its sender, and returns the session's keys.
func (r *Responder) Answer(in *Initiation, psk wgtypes.Key, localIndex uint32, resp []byte) (*Session, error) {
	if len(resp) != device.MessageResponseSize {
		return nil, errors.New("wgnoise: response buffer of the wrong size")
	}
	ck, h := in.chainKey, in.hash
	var key [blake2s.Size]byte
	static, err := curve25519.X25519(r.priv[:], in.Peer[:])
	if err != nil {
		return nil, err
	}
	device.KDF2(&ck, &key, ck[:], static)
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	s := new(Session)
	if _, err := aead.Open(s.Timestamp[:0], nonce[:], in.timestamp[:], h[:]); err != nil {
		return nil, ErrTimestamp
	}
	h = mixHash(h, in.timestamp[:])

	var eph wgtypes.Key
	if _, err := rand.Read(eph[:]); err != nil {
		return nil, err
	}
	eph[0] &= 248 // clamp, as wireguard-go's newPrivateKey
	eph[31] = (eph[31] & 127) | 64
	ephPub, err := curve25519.X25519(eph[:], curve25519.Basepoint)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(resp[0:], device.MessageResponseType)
	binary.LittleEndian.PutUint32(resp[4:], localIndex)
	binary.LittleEndian.PutUint32(resp[8:], in.Sender)
	copy(resp[12:44], ephPub)
	h = mixHash(h, ephPub)
	device.KDF1(&ck, ck[:], ephPub)
	for _, pub := range [][]byte{in.ephemeral[:], in.Peer[:]} {
		ss, err := curve25519.X25519(eph[:], pub)
		if err != nil {
			return nil, err
		}
		device.KDF1(&ck, ck[:], ss)
	}
	var tau [blake2s.Size]byte
	device.KDF3(&ck, &tau, &key, ck[:], psk[:])
	h = mixHash(h, tau[:])
	aead, _ = chacha20poly1305.New(key[:])
	aead.Seal(resp[44:44], nonce[:], nil, h[:])
	clear(resp[60:]) // mac1, mac2
	device.KDF2(&s.Recv, &s.Send, ck[:], nil)
	return s, nil
}

func mixHash(h [blake2s.Size]byte, data []byte) [blake2s.Size]byte {
	d, _ := blake2s.New256(nil)
	d.Write(h[:])
	d.Write(data)
	var out [blake2s.Size]byte
	d.Sum(out[:0])
	return out
}

// Transport messages (whitepaper 5.4.6): type, the receiver's index, a
// counter, and the packet sealed under the session key with the counter as
// nonce, padded to a multiple of 16 bytes. wireguard-go's
// MessageTransport* constants give the layout.

// Receiver returns the receiver index of the transport message b.
func Receiver(b []byte) (uint32, bool) {
	if len(b) < device.MessageTransportSize || binary.LittleEndian.Uint32(b) != device.MessageTransportType {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[device.MessageTransportOffsetReceiver:]), true
}

// Open decrypts the transport message b under aead (a session's Recv key)
// into dst and returns the packet (empty: a keepalive, or padding) and its
// counter. Replay protection is the caller's.
func Open(aead cipher.AEAD, dst, b []byte) ([]byte, uint64, error) {
	if _, ok := Receiver(b); !ok {
		return nil, 0, errors.New("wgnoise: not a transport message")
	}
	counter := binary.LittleEndian.Uint64(b[device.MessageTransportOffsetCounter:])
	var nonce [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(nonce[4:], counter)
	out, err := aead.Open(dst[:0], nonce[:], b[device.MessageTransportOffsetContent:], nil)
	return out, counter, err
}

// Seal appends to dst the transport message carrying packet to the
// receiver index under aead (a session's Send key) and counter.
func Seal(dst []byte, aead cipher.AEAD, receiver uint32, counter uint64, packet []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, device.MessageTransportType)
	dst = binary.LittleEndian.AppendUint32(dst, receiver)
	dst = binary.LittleEndian.AppendUint64(dst, counter)
	var nonce [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(nonce[4:], counter)
	padded := (len(packet) + 15) &^ 15
	plain := make([]byte, padded)
	copy(plain, packet)
	return aead.Seal(dst, nonce[:], plain, nil)
}
