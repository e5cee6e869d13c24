// Package gcbound bounds the garbage a Go process keeps between
// collections to a fixed number of bytes, however large its live heap.
//
// GOGC sets the next collection's goal in proportion to the live heap: at
// 50 a heap of 40 MiB collects at 60, so 20 MiB of garbage becomes
// resident before each collection. For weft's agent at 5000 Nodes a third
// of that live heap is wireguard-go's fixed packet buffers, mostly never
// written and so not resident, yet each buys GOGC's share of garbage,
// which is. Bound sets Go's soft memory limit, after every collection, to
// what the collection left in use plus a fixed headroom: the next
// collection comes at the lower of the two goals, and the runtime's
// scavenger hands back to the kernel what lies beyond the limit. At a
// small heap GOGC's goal is the lower and nothing changes.
package gcbound

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Bound keeps the garbage between collections under headroom bytes, never
// setting a soft limit above ceiling (a limit the operator set, GOMEMLIMIT;
// math.MaxInt64 for none). The returned stop ends it and restores ceiling.
func Bound(headroom, ceiling int64) (stop func()) {
	b := &bound{headroom: headroom, ceiling: ceiling, samples: []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}}
	b.arm()
	current.Store(b)
	return func() {
		b.stopped.Store(true)
		current.CompareAndSwap(b, nil)
		debug.SetMemoryLimit(ceiling)
	}
}

// current is the running Bound's (nil: none).
var current atomic.Pointer[bound]

// Lift lifts the bound until Restore, for garbage that the caller will
// collect itself: the agent's reconcile passes, whose release collects and
// returns the heap once passes have stopped for 2 s. Bounded, a pass's
// ~9 MB at 5000 Nodes (more than the headroom) cost a collection in the
// middle of each pass at rest, and passes back to back under churn (tens
// of MB a second) a collection every few hundred milliseconds: the mean
// pass went from 118 to 263 ms. A no-op without Bound.
func Lift() {
	if b := current.Load(); b != nil && !b.stopped.Load() {
		b.lifted.Store(true)
		debug.SetMemoryLimit(b.ceiling)
	}
}

// Restore ends Lift: the next collection (the caller's own, next) sets
// the bound again.
func Restore() {
	if b := current.Load(); b != nil {
		b.lifted.Store(false)
	}
}

type bound struct {
	headroom, ceiling int64
	samples           []metrics.Sample // used by the cleanups only, which run one per collection
	stopped, lifted   atomic.Bool
	limit             atomic.Int64 // the last limit set
}

// sentinel is an object the next collection finds unreachable; its cleanup
// runs after that collection. It holds a pointer so that it is not
// allocated in a tiny block shared with other objects (whose cleanup could
// wait for them).
type sentinel struct {
	_ *int
	_ [16]byte
}

func (b *bound) arm() {
	runtime.AddCleanup(new(sentinel), func(b *bound) { b.collected() }, b)
}

// collected runs after each collection: the limit becomes what the process
// holds besides garbage (the live heap in place of the heap's objects,
// which still count what this collection has not yet swept) plus
// headroom.
func (b *bound) collected() {
	if b.stopped.Load() {
		return
	}
	defer b.arm()
	if b.lifted.Load() {
		// Again: Lift's limit may have crossed a collection's.
		debug.SetMemoryLimit(b.ceiling)
		return
	}
	metrics.Read(b.samples)
	v := func(i int) int64 { return int64(b.samples[i].Value.Uint64()) }
	inUse := v(0) - v(1) - v(2) - v(3) + v(4)
	limit := min(inUse+b.headroom, b.ceiling)
	b.limit.Store(limit)
	debug.SetMemoryLimit(limit)
}
