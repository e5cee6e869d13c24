package agent

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/peer"
)

// Direct-path fallbacks: peers whose direct routes could not be written go
// through the tunnel until noDirectFor has passed.

// directFailed records the peers whose direct routes could not be written,
// and says so once per fallback: a metric, a warning, an Event on the
// peer's Node.
func (a *Agent) directFailed(peers []peer.NodeInfo, e *mesh.DirectPathError) {
	for _, f := range e.Failed {
		name := ""
		for _, n := range peers {
			if slices.Contains(n.PodCIDRs, f.Dst) {
				name = n.Name
				break
			}
		}
		if name == "" || !a.noDirect.add(name, time.Now()) {
			continue
		}
		a.metrics.directFailures.Inc()
		msg := fmt.Sprintf("weft-agent on %s cannot route %s directly via %s (%v): its traffic goes through the tunnel for %v", a.cfg.NodeName, f.Dst, f.Via, f.Err, noDirectFor)
		a.log.Warn("direct path unusable; using the tunnel", "peer", name, "dst", f.Dst.String(), "via", f.Via.String(), "err", f.Err)
		if a.kube != nil {
			a.kube.Event(name, "WeftDirectPathUnusable", msg)
		}
	}
}

// noDirectFor is how long a peer whose direct route failed stays in the
// tunnel before the direct path is tried again (the underlay may change).
const noDirectFor = 10 * time.Minute

// fallbacks remembers the peers whose direct path failed, until when (the
// loop writes, the HTTP server reads).
type fallbacks struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// add records name; it reports whether name was not already recorded.
func (f *fallbacks) add(name string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.until == nil {
		f.until = map[string]time.Time{}
	}
	_, had := f.until[name]
	f.until[name] = now.Add(noDirectFor)
	return !had
}

// names are the peers in the tunnel now; expired entries are dropped.
func (f *fallbacks) names() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	out := map[string]bool{}
	for n, until := range f.until {
		if now.After(until) {
			delete(f.until, n)
			continue
		}
		out[n] = true
	}
	return out
}

// has reports whether name's direct path has failed and not yet expired.
func (f *fallbacks) has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.until[name]
	return ok && time.Now().Before(until)
}
