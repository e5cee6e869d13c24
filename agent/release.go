package agent

import (
	"runtime/debug"
	"sync"
	"time"
)

// Returning the heap a pass left. A reconcile pass builds the desired
// state afresh: at 5000 Nodes it allocated ~9 MB before its slices were
// sized (stop 48; still megabytes), garbage once the pass ends, and a
// collection that falls during a pass marks the pass's working data live
// and sets the next goal by it (GOGC 50:
// half as much again). Go's scavenger gives free pages back only above
// that goal (and slowly), so between passes the agent kept 10-12 MiB of
// free heap resident at 5000 Nodes (README, "Memory at 5000"). Once
// passes stop for settleAfter, and at most every releaseEvery, the agent
// collects and hands every free page back (debug.FreeOSMemory): at rest
// that is once per resync, ~2 s after its pass; under churn, when it ends.
const (
	settleAfter  = 2 * time.Second
	releaseEvery = 30 * time.Second
)

// releaser runs release once passes have stopped for settle, at most
// every every. Passes come from the loop; release runs on a timer's
// goroutine.
type releaser struct {
	settle, every time.Duration
	release       func()

	mu      sync.Mutex
	t       *time.Timer
	last    time.Time // the last release; zero: none yet
	stopped bool
}

func newReleaser(settle, every time.Duration, release func()) *releaser {
	return &releaser{settle: settle, every: every, release: release}
}

// freeHeap is the agent's release: a collection, then the free heap to
// the kernel.
func freeHeap() { debug.FreeOSMemory() }

// passed says a pass just ended: the release waits until passes have
// stopped for settle.
func (r *releaser) passed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if r.t == nil {
		r.t = time.AfterFunc(r.settle, r.fire)
		return
	}
	r.t.Reset(r.settle)
}

func (r *releaser) fire() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	if since := time.Since(r.last); !r.last.IsZero() && since < r.every {
		r.t.Reset(r.every - since) // released recently: once more when it is due
		r.mu.Unlock()
		return
	}
	r.last = time.Now()
	r.mu.Unlock()
	r.release()
}

// stop ends it: no release after stop returns, beyond one already running.
func (r *releaser) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.t != nil {
		r.t.Stop()
	}
}
