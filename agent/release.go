package agent

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Returning the heap a pass left. A reconcile pass builds the desired
// state afresh: at 5000 Nodes it allocated ~9 MB before its slices were
// sized (stop 48; still megabytes), garbage once the pass ends, and a collection that falls during a pass marks
// the pass's working data live and sets the next goal by it (GOGC 50:
// half as much again). Go's scavenger gives free pages back only above
// that goal (and slowly), so between passes the agent kept 10-12 MiB of
// free heap resident at 5000 Nodes (README, "Memory at 5000"). Once
// passes stop for settleAfter, and at most every releaseEvery, the agent
// collects and hands every free page back (debug.FreeOSMemory): at rest
// that is once per resync, ~2 s after its pass; under churn, when it ends.
//
// Traffic makes garbage without passes: a working set's handshakes, key
// exchanges and peers woken and rested. At 5000 Nodes the collector lets
// it grow to half the live heap (GOGC 50 of ~37 MiB, a third of it
// wireguard-go's never-written buffers), all of it written and resident.
// So the agent also releases, at most every releaseEvery, when the heap
// holds releaseGrowth more than the last collection left live.
const (
	settleAfter   = 2 * time.Second
	releaseEvery  = 30 * time.Second
	releaseGrowth = 8 << 20
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
	done    chan struct{} // closed by stop: ends the growth check
}

// newReleaser starts it; grown, looked at every every, says the heap has
// grown enough for a release without a pass.
func newReleaser(settle, every time.Duration, release func(), grown func() bool) *releaser {
	r := &releaser{settle: settle, every: every, release: release, done: make(chan struct{})}
	go r.watch(grown)
	return r
}

// freeHeap is the agent's release: a collection, then the free heap to
// the kernel.
func freeHeap() { debug.FreeOSMemory() }

// heapGrown reports whether the heap's objects exceed what the last
// collection left live by releaseGrowth.
func heapGrown() bool {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 || s[1].Value.Kind() != rtmetrics.KindUint64 {
		return false // a runtime without them
	}
	return s[0].Value.Uint64() >= s[1].Value.Uint64()+releaseGrowth
}

// watch releases, every every, when grown says so and no release came
// within every.
func (r *releaser) watch(grown func() bool) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if r.stopped || (!r.last.IsZero() && time.Since(r.last) < r.every) || !grown() {
			r.mu.Unlock()
			continue
		}
		r.last = time.Now()
		r.mu.Unlock()
		r.release()
	}
}

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
	if !r.stopped {
		close(r.done)
	}
	r.stopped = true
	if r.t != nil {
		r.t.Stop()
	}
}
