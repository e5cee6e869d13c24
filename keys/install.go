package keys

import (
	"errors"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pq"
)

// Installing an agreed key: writing it to the device and having the
// device shake hands under it, beside the session in use or by
// re-creating the peer.

// install records an agreed key and writes it to the device (fresh: a
// handshake under it now, beside the session in use or by re-creating the
// peer). A key agreed under a node key since replaced is dropped.
func (k *Manager) install(pub wgtypes.Key, self *pq.Identity, psk wgtypes.Key, fresh bool) error {
	k.mu.Lock()
	p, ok := k.pairs[pub]
	if !ok || k.self != self {
		k.mu.Unlock()
		return errors.New("pair changed during the exchange")
	}
	p.psk, p.has, p.agreed = psk, true, time.Now()
	k.mu.Unlock()
	k.changedKeys()
	if !fresh {
		_, err := k.write(pub, false)
		return err
	}
	start := time.Now()
	if t, ok := k.dev.LastHandshake(pub); ok && start.Sub(t) < sessionInUse {
		return k.rekeyInPlace(pub, t, start)
	}
	// No session in use: re-create the peer so it shakes hands under the
	// new key now, and check that it did: the other end drops an
	// initiation that follows our previous one within wireguard-go's
	// timestamp granularity and flood limit (about 20 ms), and it takes
	// one even under the wrong preshared key (IKpsk2 mixes the key in only
	// at the response). An initiation the old peer sent just before (a
	// restarted agent's, or one a reconcile's keepalive started) would
	// otherwise make the new one wait for WireGuard's 5 s retry.
	for range 3 {
		wrote, err := k.write(pub, true)
		if err != nil || !wrote {
			return err
		}
		time.Sleep(handshakeCheck)
		if t, ok := k.dev.LastHandshake(pub); ok && t.After(start) {
			return nil
		}
	}
	return nil
}

// sessionInUse is how recent a handshake must be for its session to carry
// traffic while the next is made: WireGuard's RekeyAfterTime, after which
// a session still sending starts a new handshake (it rejects at 180 s).
const sessionInUse = 120 * time.Second

// rekeyTimeout is WireGuard's RekeyTimeout: the device sends no initiation
// within this long of its last one (device.SendHandshakeInitiation).
const rekeyTimeout = 5 * time.Second

// rekeyInPlace writes an agreed key beside the session in use (last shook
// hands at shook) and starts a handshake under it. The session goes on
// carrying traffic both ways until the new one replaces it, so nothing in
// flight is lost: re-creating the peer dropped what the old session still
// carried and what waited for the handshake (bench-scale: 4-6 of 8175
// pings to awake peers; the lab's rotation test: 2 in 12 rotations). The
// session is not expired either: stopping its sending until the new
// handshake completed paused a stream for WireGuard's 5-s retry whenever
// that handshake failed (stop 51's reverted try). An initiation that
// fails (the other end has not installed the key yet) WireGuard retries
// after 5 s. One the device skips, within 5 s of its last, is sent again
// once that limit has passed, unless a handshake has been made since.
//
// A pair's first key takes this way too when a session is in use: that
// is --pq=preferred, where the peer's wake made a session without a key
// and traffic already went over it (required keeps a peer without a key
// off the device, so it has no session and is re-created). It goes on for
// the handshake's round trip, or at most ~5 s when the device's limit
// holds the initiation back.
func (k *Manager) rekeyInPlace(pub wgtypes.Key, shook, start time.Time) error {
	if wrote, err := k.write(pub, false); err != nil || !wrote {
		return err
	}
	k.dev.Handshake(pub)
	if wait := shook.Add(rekeyTimeout + handshakeCheck).Sub(start); wait > 0 {
		time.AfterFunc(wait, func() {
			if t, ok := k.dev.LastHandshake(pub); !ok || !t.After(start) {
				k.dev.Handshake(pub)
			}
		})
	}
	return nil
}

// handshakeCheck is how long after re-creating a peer its handshake is
// looked for: many round trips, and more than the ~20 ms within which a
// second initiation is refused.
const handshakeCheck = 150 * time.Millisecond
