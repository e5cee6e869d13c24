package agent

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestReleaseWaitsForPassesToStop: no release while passes keep coming,
// one once they stop, and never two within every.
func TestReleaseWaitsForPassesToStop(t *testing.T) {
	const settle, every = 200 * time.Millisecond, 1500 * time.Millisecond
	var n atomic.Int32
	r := newReleaser(settle, every, func() { n.Add(1) })
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
