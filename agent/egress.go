package agent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/nft"
	"github.com/weftnet/weft/plan"
)

// egress keeps the egress NAT's sets in step with the mesh. The loop writes
// the chain and sets whole itself (the first time, after a failure or a
// damaged table, when masquerade or strict mode change: a pass then waits
// for it, and readiness with it); a change of members only (a Node that
// comes or goes) it hands to a writer of its own and goes on. At thousands
// of nodes one nft run reads the whole table first and takes a tenth of a
// second or more: in the loop, that was most of a Node change's way to its
// route. The sets follow within one nft run; what a Node change can meet
// meanwhile is in docs/design.md ("Egress NAT at scale").
type egress struct {
	tables knftables.Interface
	log    *slog.Logger

	wantMu sync.Mutex
	want   *plan.Egress // the newest the loop asked for

	writeMu sync.Mutex                  // held while nft runs
	applied atomic.Pointer[plan.Egress] // what the table holds; nil: unknown (write whole)

	kick   chan struct{} // the loop → the writer: want changed
	failed chan struct{} // the writer → the loop: the table is unknown, write it whole
}

func newEgress(tables knftables.Interface, log *slog.Logger) *egress {
	return &egress{tables: tables, log: log, kick: make(chan struct{}, 1), failed: make(chan struct{}, 1)}
}

// apply makes want the egress NAT: whole, now, when the table is unknown or
// a chain changes; else by the writer (run), and it returns at once.
func (e *egress) apply(ctx context.Context, want plan.Egress) error {
	e.wantMu.Lock()
	e.want = &want
	e.wantMu.Unlock()
	prev := e.applied.Load()
	if prev != nil && prev.Equal(want) {
		return nil
	}
	if prev != nil && prev.SameChains(want) {
		select {
		case e.kick <- struct{}{}:
		default:
		}
		return nil
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if err := nft.ApplyMasquerade(ctx, e.tables, want, nil); err != nil {
		e.applied.Store(nil)
		return err
	}
	e.applied.Store(&want)
	return nil
}

// forget says the table is unknown (it was damaged): the next apply writes
// it whole. It waits for a write under way, which would otherwise record
// what it wrote after this.
func (e *egress) forget() {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.applied.Store(nil)
}

// run is the writer: it brings the sets from what the table holds to the
// newest want, element by element, until ctx ends.
func (e *egress) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		}
		e.writeMu.Lock()
		e.wantMu.Lock()
		want := e.want
		e.wantMu.Unlock()
		prev := e.applied.Load()
		if want != nil && prev != nil && !prev.Equal(*want) {
			if err := nft.ApplyMasquerade(ctx, e.tables, *want, prev); err != nil {
				if ctx.Err() == nil {
					e.log.Error("egress NAT sets not updated; writing them whole", "err", err)
				}
				e.applied.Store(nil)
				select {
				case e.failed <- struct{}{}:
				default:
				}
			} else {
				e.applied.Store(want)
			}
		}
		e.writeMu.Unlock()
	}
}
