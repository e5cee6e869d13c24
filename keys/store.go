package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/atomicfile"
)

// The pairs' keys on disk, so that an agent restarted after a crash (kill
// -9, an OOM kill) shakes hands under them at once: without them its
// first handshakes fail (the peers hold a preshared key it lost) until a
// new key is agreed, and the pause is an exchange and two handshakes
// longer. The file is as secret as the node's private key beside it (mode
// 0600 in the 0700 state directory): both are needed to read recorded
// traffic, and one is no use without the other.

// StoreFile is the name of the pairs' keys inside the state directory.
const StoreFile = "pair-keys.json"

// maxStoreSize bounds what a restart reads: ~200 bytes a pair, so 16 MiB
// is far beyond 5000 peers.
const maxStoreSize = 16 << 20

// saveAfter gathers the agreements of a moment into one write: a pair
// rotates every few minutes, so thousands of pairs would otherwise write
// the file many times a second.
const saveAfter = 2 * time.Second

// stored is the file's content.
type stored struct {
	NodeKey string `json:"node_key"` // this node's public key the keys were agreed under
	Keys    []Held `json:"keys"`
}

// changedKeys notes that the keys on disk are out of date. Called with or
// without k.mu.
func (k *Manager) changedKeys() {
	select {
	case k.dirty <- struct{}{}:
	default:
	}
}

// persist writes the keys to the store saveAfter after they change, until
// ctx ends; then once more if they changed since (a stopped agent keeps the
// keys of its last seconds: a restart under an older key than the peer's
// has no session until a new exchange), unless a handover holds the
// exchanges (the successor writes the file from then on).
func (k *Manager) persist(ctx context.Context) {
	if k.store == "" {
		return
	}
	save := func() {
		if err := k.save(); err != nil {
			k.log.Warn("cannot keep the pairs' keys for a restart", "file", k.store, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			k.saveLast(save)
			return
		case <-k.dirty:
		}
		select {
		case <-ctx.Done():
			if !k.holding() {
				save()
			}
			return
		case <-time.After(k.saveAfter):
		}
		save()
	}
}

// saveLast writes the keys at the end if they changed since the last write
// and no handover holds the exchanges.
func (k *Manager) saveLast(save func()) {
	select {
	case <-k.dirty:
		if !k.holding() {
			save()
		}
	default:
	}
}

// holding reports whether a handover holds the exchanges (Hold).
func (k *Manager) holding() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held
}

func (k *Manager) save() error {
	held, _ := k.Export()
	k.mu.Lock()
	self := k.self.PublicKey()
	k.mu.Unlock()
	b, err := json.Marshal(stored{NodeKey: self.String(), Keys: held})
	if err != nil {
		return err
	}
	return atomicfile.Write(k.store, b, 0o600)
}

// RestoreKept takes over the keys the last run of this node kept (Store),
// before the first Update, as Restore does a predecessor's; a file that
// cannot be used is logged and the pairs agree new keys.
func (k *Manager) RestoreKept() {
	if k.mode == Off || k.store == "" {
		return
	}
	k.mu.Lock()
	self := k.self.PublicKey()
	k.mu.Unlock()
	held, err := loadStored(k.store, self)
	if err != nil {
		k.log.Warn("ignoring the kept pair keys; agreeing new ones", "err", err)
		return
	}
	if len(held) > 0 {
		k.Restore(held, time.Time{})
		k.log.Info("restored the pair keys the last run kept", "pairs", len(held))
	}
}

// loadStored reads the pairs' keys a previous run of this node kept at
// path: none if there is no file, or if they were agreed under another
// node key. Each is due for a new exchange at once (a peer may have
// dropped its own while this agent was down); until then it lets the
// first handshakes succeed.
func loadStored(path string, self wgtypes.Key) ([]Held, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pair keys %s: want a regular file only its owner may read (mode %v)", path, st.Mode())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStoreSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStoreSize {
		return nil, fmt.Errorf("pair keys %s: larger than %d MiB", path, maxStoreSize>>20)
	}
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("pair keys %s: %w", path, err)
	}
	if s.NodeKey != self.String() {
		return nil, nil // agreed under a node key since replaced
	}
	now := time.Now()
	for i := range s.Keys {
		s.Keys[i].Next = now
	}
	return s.Keys, nil
}
