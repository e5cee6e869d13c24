package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/plan"
)

// keyWrite asks the loop, the device's one writer, to write one pair's newly
// agreed key between two reconciles (keys.Writer).
type keyWrite struct {
	pub   wgtypes.Key
	fresh bool
	done  chan keyWritten // buffered: the loop never waits on it
}

type keyWritten struct {
	wrote bool
	err   error
}

// keyWriteWait bounds how long a key exchange waits for the loop to take
// its key (the loop may be in a reconcile, or not started yet).
const keyWriteWait = 5 * time.Second

// requestKeyWrite is the key manager's keyWriter: it hands the write to the
// loop and waits for it, until ctx ends.
func (a *Agent) requestKeyWrite(ctx context.Context) keys.Writer {
	return func(pub wgtypes.Key, fresh bool) (bool, error) {
		w := keyWrite{pub: pub, fresh: fresh, done: make(chan keyWritten, 1)}
		t := time.NewTimer(keyWriteWait)
		defer t.Stop()
		select {
		case a.keyWrites <- w:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
			return false, fmt.Errorf("the agent's loop did not take the key within %v", keyWriteWait)
		}
		r := <-w.done // taken: the loop answers before anything else
		return r.wrote, r.err
	}
}

// writeKey writes one pair's key as the last plan has the peer. A peer the
// plan does not put on the device (a direct path, or gone) is left to the
// next reconcile.
func (a *Agent) writeKey(pub wgtypes.Key, fresh bool) (bool, error) {
	planned := a.memo.plan.Peers // before the keys
	i := slices.IndexFunc(planned, func(p plan.Peer) bool { return p.PublicKey == pub })
	if i < 0 {
		return false, nil
	}
	var want *plan.Peer
	if ps := a.pq.Keys(pub).Fill(planned[i : i+1]); len(ps) == 1 {
		want = &ps[0]
	}
	wrote, err := a.mesh.WritePeerKey(pub, want, fresh)
	if wrote {
		a.http.Invalidate()
	}
	return wrote, err
}
