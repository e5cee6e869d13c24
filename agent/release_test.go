package agent

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// TestReleaseWaitsForPassesToStop: no release while passes keep coming,
// one once they stop, and never two within every.
func TestReleaseWaitsForPassesToStop(t *testing.T) {
	const settle, every = 200 * time.Millisecond, 1500 * time.Millisecond
	var n atomic.Int32
	r := newReleaser(settle, every, func() { n.Add(1) }, func() bool { return false })
	defer r.stop()
	for range 10 { // churn: a pass every 20 ms for 200 ms
		r.passed()
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("%d releases while passes kept coming, want 0", got)
	}
	time.Sleep(3 * settle)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d releases once passes stopped, want 1", got)
	}
	r.passed() // a pass right after: its release waits until every has passed
	time.Sleep(3 * settle)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d releases within %v of the last, want 1", got, every)
	}
	time.Sleep(every)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d releases once %v had passed, want 2", got, every)
	}
	r.stop()
	r.passed()
	time.Sleep(3 * settle)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d releases after stop, want 2", got)
	}
}

// TestReleaseWhenTheHeapGrows: with no pass at all, a heap that has grown
// is released once every every, and one that has not is left alone.
func TestReleaseWhenTheHeapGrows(t *testing.T) {
	const every = 300 * time.Millisecond
	var n atomic.Int32
	var grown atomic.Bool
	r := newReleaser(time.Hour, every, func() { n.Add(1) }, grown.Load)
	defer r.stop()
	time.Sleep(3*every + every/2)
	if got := n.Load(); got != 0 {
		t.Fatalf("%d releases of a heap that did not grow, want 0", got)
	}
	grown.Store(true)
	time.Sleep(3*every + every/2)
	if got := n.Load(); got < 2 || got > 4 {
		t.Fatalf("%d releases of a grown heap in %v, want one every %v", got, 3*every+every/2, every)
	}
	r.stop()
	was := n.Load()
	time.Sleep(2 * every)
	if got := n.Load(); got != was {
		t.Fatalf("%d releases after stop, want none", got-was)
	}
}

// heapGrown reads the runtime: false right after a collection, true once
// the heap holds releaseGrowth of garbage.
// (The collector is off meanwhile, so that the garbage stays.)
func TestHeapGrown(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	if heapGrown() {
		t.Fatal("the heap has grown right after a collection")
	}
	for range 2 * releaseGrowth / (64 << 10) {
		sink = make([]byte, 64<<10)
	}
	if !heapGrown() {
		t.Errorf("the heap has not grown after %d MiB of garbage", 2*releaseGrowth>>20)
	}
	runtime.GC()
	if heapGrown() {
		t.Error("the heap has grown right after collecting the garbage")
	}
}

var sink []byte
