package pq

import (
	"encoding/binary"
	"sync"
	"time"
)

// MaxReplays bounds the first messages a responder remembers. Only
// authenticated ones are remembered, so only the holder of a peer's key
// can fill it: at a rotation every 3 min, 5000 peers take ~3300 places.
const MaxReplays = 1 << 16

// Replays remembers the nonces of the first messages a responder took, for
// twice MaxSkew (after that the time in the nonce refuses them anyway).
// The zero value is ready.
type Replays struct {
	mu     sync.Mutex
	seen   map[[nonceSize]byte]time.Time // nonce -> forget after
	pruned time.Time
}

// take reports whether an authenticated m1 with nonce may be answered at
// now: its time is within MaxSkew and its nonce is new (then remembered).
// Full, it refuses (fail closed) until old nonces age out.
func (r *Replays) take(nonce []byte, now time.Time) bool {
	sent := time.UnixMilli(int64(binary.BigEndian.Uint64(nonce)))
	if d := now.Sub(sent); d > MaxSkew || d < -MaxSkew {
		return false
	}
	if r == nil {
		return true
	}
	var key [nonceSize]byte
	copy(key[:], nonce)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[[nonceSize]byte]time.Time{}
	}
	if _, ok := r.seen[key]; ok {
		return false
	}
	if len(r.seen) >= MaxReplays || now.Sub(r.pruned) > MaxSkew {
		r.pruned = now
		for k, until := range r.seen {
			if now.After(until) {
				delete(r.seen, k)
			}
		}
		if len(r.seen) >= MaxReplays {
			return false
		}
	}
	r.seen[key] = now.Add(2 * MaxSkew)
	return true
}
