package keys

import "time"

// Hold stops the pairs' key exchanges for a handover (package handover):
// none starts, a peer's is answered busy (it tries again in 2 s), and Hold
// returns once the running ones have ended, or after timeout (it reports
// which). The device's preshared keys then stay as the successor is
// offered them until it takes over, or Resume.
//
// Without it, a key agreed between the offer and the take leaves the
// successor shaking hands under the old key, which the peer no longer
// holds: no session until WireGuard's 5 s retry after the take.
func (k *Manager) Hold(timeout time.Duration) bool {
	if k.mode == Off {
		return true
	}
	k.mu.Lock()
	k.held = true
	k.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		if k.idle() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Resume ends a Hold (a successor that did not take over).
func (k *Manager) Resume() {
	k.mu.Lock()
	k.held = false
	k.mu.Unlock()
	k.poke()
}

// idle reports whether no exchange runs with any peer.
func (k *Manager) idle() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pairs {
		if len(p.busy) > 0 {
			return false
		}
	}
	return true
}
