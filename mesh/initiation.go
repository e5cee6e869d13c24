package mesh

import (
	"crypto/subtle"
	"encoding/binary"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Who sends a handshake initiation: the first message of WireGuard's
// Noise IK handshake carries the initiator's static public key, encrypted
// to the responder's static key. wireguard-go drops an initiation from a
// key it has no peer for; a resting peer (one taken off the device while
// idle) is such a key, and the mesh must put it back before wireguard-go
// sees the message. Reading the key costs one X25519 and one AEAD open,
// as wireguard-go's own ConsumeMessageInitiation does, and only messages
// with a valid mac1 (keyed by this node's public key: anyone may compute
// it, but a random packet does not have it) get that far.

// Offsets in the message (WireGuard whitepaper, 5.4.2); its type and size
// are wireguard-go's MessageInitiationType and MessageInitiationSize.
const (
	offEphemeral = 8
	offStatic    = 40
	offTimestamp = 88
	offMAC1      = 116
)

var (
	initialChainKey [blake2s.Size]byte
	initialHash     [blake2s.Size]byte
)

func init() {
	initialChainKey = blake2s.Sum256([]byte(device.NoiseConstruction))
	initialHash = mixHash(initialChainKey, []byte(device.WGIdentifier))
}

// initiationReader reads initiators' keys for one node key.
type initiationReader struct {
	priv    wgtypes.Key
	hash0   [blake2s.Size]byte // the handshake hash after the responder's key
	mac1Key [blake2s.Size]byte
}

func newInitiationReader(priv wgtypes.Key) *initiationReader {
	pub := priv.PublicKey()
	r := &initiationReader{priv: priv, hash0: mixHash(initialHash, pub[:])}
	r.mac1Key = blake2s.Sum256(append([]byte(device.WGLabelMAC1), pub[:]...))
	return r
}

// isInitiation reports whether b has the shape of a handshake initiation.
func isInitiation(b []byte) bool {
	return len(b) == device.MessageInitiationSize && binary.LittleEndian.Uint32(b) == device.MessageInitiationType
}

// initiator returns the static public key of the initiation b, when b is a
// well-formed initiation to this node: its mac1 checks and the key
// decrypts.
func (r *initiationReader) initiator(b []byte) (wgtypes.Key, bool) {
	if !isInitiation(b) {
		return wgtypes.Key{}, false
	}
	mac, _ := blake2s.New128(r.mac1Key[:])
	mac.Write(b[:offMAC1])
	var sum [blake2s.Size]byte
	if subtle.ConstantTimeCompare(mac.Sum(sum[:0])[:16], b[offMAC1:offMAC1+16]) != 1 {
		return wgtypes.Key{}, false
	}
	eph := b[offEphemeral:offStatic]
	h := mixHash(r.hash0, eph)
	var ck, key [blake2s.Size]byte
	device.KDF1(&ck, initialChainKey[:], eph)
	ss, err := curve25519.X25519(r.priv[:], eph)
	if err != nil { // a low-order point
		return wgtypes.Key{}, false
	}
	device.KDF2(&ck, &key, ck[:], ss)
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	var pub wgtypes.Key
	if _, err := aead.Open(pub[:0], nonce[:], b[offStatic:offTimestamp], h[:]); err != nil {
		return wgtypes.Key{}, false
	}
	return pub, true
}

func mixHash(h [blake2s.Size]byte, data []byte) [blake2s.Size]byte {
	d, _ := blake2s.New256(nil)
	d.Write(h[:])
	d.Write(data)
	var out [blake2s.Size]byte
	d.Sum(out[:0])
	return out
}
