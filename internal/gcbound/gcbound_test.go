package gcbound

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"testing"
	"time"
)

// sink keeps each allocation reachable until the next replaces it.
var sink []byte

// TestBoundHoldsGarbage keeps 48 MiB live (GOGC 50 lets 24 MiB of
// garbage build up on it) and allocates 200 MiB of garbage in 64 KiB
// pieces, at most ~1 GB/s, reading after each piece the memory the runtime holds (all it
// has mapped less what it gave back) over what it held with only the live
// heap. With a headroom of 4 MiB that stays under 8 MiB nine readings in
// ten (~2.6 MiB here), and under half what GOGC alone holds (~24 MiB; the
// control: the test can fail). Not every reading: a collection counts
// what is allocated while it marks as live, so at a fast enough rate a
// cycle's limit comes out higher (unpaced, this test saw 4-20 MiB).
// Lifted (Lift) it holds what GOGC alone holds, and after Restore and a
// collection the bound again.
func TestBoundHoldsGarbage(t *testing.T) {
	old := debug.SetGCPercent(50)
	defer debug.SetGCPercent(old)
	live := make([][]byte, 48)
	for i := range live {
		live[i] = make([]byte, 1<<20)
		for j := 0; j < len(live[i]); j += 4096 {
			live[i][j] = 1
		}
	}
	runtime.GC()
	base := held()
	churn := func() (p90 int64) {
		over := make([]int64, 0, 200*16)
		for i := range cap(over) {
			sink = make([]byte, 64<<10)
			sink[0] = 1
			over = append(over, held()-base)
			if i%4 == 0 {
				time.Sleep(100 * time.Microsecond) // ~1 GB/s without
			}
		}
		slices.Sort(over)
		return over[len(over)*9/10]
	}
	stop := Bound(4<<20, math.MaxInt64)
	runtime.GC() // the first limit
	bounded := churn()
	Lift() // as a reconcile pass does: GOGC alone until Restore
	lifted := churn()
	Restore()
	runtime.GC() // as the release does
	restored := churn()
	stop()
	runtime.GC()
	free := churn()
	runtime.KeepAlive(live)
	t.Logf("held over the live heap's, 9 readings in 10: %.1f MiB bounded, %.1f MiB with GOGC 50 alone", float64(bounded)/(1<<20), float64(free)/(1<<20))
	if bounded > 8<<20 {
		t.Errorf("with a 4 MiB headroom the runtime held %.1f MiB over the live heap's", float64(bounded)/(1<<20))
	}
	t.Logf("lifted %.1f MiB, restored %.1f MiB", float64(lifted)/(1<<20), float64(restored)/(1<<20))
	if lifted < 2*bounded || restored > 8<<20 {
		t.Errorf("lifted, the runtime held %.1f MiB over, then restored %.1f: want GOGC's, then the bound's", float64(lifted)/(1<<20), float64(restored)/(1<<20))
	}
	if free < 2*bounded {
		t.Errorf("GOGC alone held %.1f MiB over, bounded %.1f: the bound made no difference", float64(free)/(1<<20), float64(bounded)/(1<<20))
	}
}

// held is what the runtime holds of the kernel's memory (what a memory
// limit counts).
func held() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
