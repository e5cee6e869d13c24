package bench

import (
	"crypto/rand"
	"runtime"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// SealRate is what one core seals with ChaCha20-Poly1305 (WireGuard's
// cipher, the implementation wireguard-go uses) at one packet size: the
// ceiling of a single-flow tunnel if a core did nothing but encrypt.
type SealRate struct {
	Bytes int     `json:"bytes"`
	Gbps  float64 `json:"gbps"`
}

// sealSizes: a full-MTU tunnel packet, and 8 KiB (the large end of the
// sizes the issue quotes for one core's sealing rate).
var sealSizes = []int{1420, 8192}

// sealCeiling measures SealRate for each of sealSizes over d each, on one
// locked OS thread (one core), as `go test -bench Seal
// golang.org/x/crypto/chacha20poly1305` does.
func sealCeiling(d time.Duration) []SealRate {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key := make([]byte, chacha20poly1305.KeySize)
	_, _ = rand.Read(key)
	aead, _ := chacha20poly1305.New(key) // a 32-byte key cannot fail
	nonce := make([]byte, chacha20poly1305.NonceSize)
	var out []SealRate
	for _, size := range sealSizes {
		msg := make([]byte, size)
		dst := make([]byte, 0, size+aead.Overhead())
		var n int
		start := time.Now()
		for time.Since(start) < d {
			for range 64 {
				nonce[0]++
				dst = aead.Seal(dst[:0], nonce, msg, nil)
			}
			n += 64
		}
		out = append(out, SealRate{Bytes: size, Gbps: float64(n*size*8) / time.Since(start).Seconds() / 1e9})
	}
	return out
}
