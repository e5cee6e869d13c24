package agent

import (
	"context"
	"maps"
	"time"

	"golang.org/x/time/rate"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/nft"
)

// The agent checks that weft's nftables objects are still there (after
// `nft flush ruleset` or a deleted table, anti-spoofing, the port guard,
// egress NAT and NetworkPolicy come back, not at the next restart) when
// the kernel says the ruleset changed (nft.Watch), and every
// integrityBackstop regardless (a lost notification). A check is two nft
// listings, each a process: an idle node, whose ruleset does not change,
// no longer runs one every 10 s. A ruleset that changes all the time
// (kube-proxy's, weft's own writes) is checked at most integrityBurst
// times in a row and then once per integrityInterval, as before. Without
// notifications the agent checks every integrityInterval.
const (
	integrityInterval = 10 * time.Second
	integrityBurst    = 3
	integrityBackstop = 2 * time.Minute
	// integritySettle lets a burst of notifications (one transaction
	// is many) end before the check.
	integritySettle = 100 * time.Millisecond
)

// integrity schedules the checks; the loop owns it.
type integrity struct {
	every *time.Ticker // integrityInterval, or integrityBackstop while watched
	soon  *time.Timer  // a check the ruleset's change asked for
	armed bool         // soon is set
	rate  *rate.Limiter
}

func newIntegrity() *integrity {
	t := &integrity{every: time.NewTicker(integrityInterval), soon: time.NewTimer(time.Hour),
		rate: rate.NewLimiter(rate.Every(integrityInterval), integrityBurst)}
	t.soon.Stop()
	return t
}

func (t *integrity) stop() { t.every.Stop(); t.soon.Stop() }

// watched: notifications arrive, the ticker is the backstop.
func (t *integrity) watched() { t.every.Reset(integrityBackstop) }

// changed arms a check: integritySettle from now, or when the rate allows.
func (t *integrity) changed() {
	if t.armed {
		return
	}
	t.armed = true
	t.soon.Reset(max(t.rate.Reserve().Delay(), integritySettle))
}

// checking records a check that starts now.
func (t *integrity) checking() {
	if t.armed {
		t.soon.Stop()
		t.armed = false
	}
}

// ensureBaseRules writes the chains weft keeps outside NetworkPolicy:
// anti-spoofing on pod veths, the agent-port guard, the traffic counters
// and the transport notrack. Each replaces its chain in one transaction.
func (a *Agent) ensureBaseRules(ctx context.Context) error {
	if err := nft.EnsureAntiSpoof(ctx, a.tables, api.HostVethPrefix, a.cfg.Interface); err != nil {
		return err
	}
	if err := nft.EnsureAgentPortGuard(ctx, a.tables, api.HostVethPrefix, a.cfg.Interface, a.cfg.GossipPort, a.cfg.ListenPort, a.pqPort()); err != nil {
		return err
	}
	if err := nft.EnsureAccounting(ctx, a.tables, a.cfg.Interface); err != nil {
		return err
	}
	return nft.EnsureTransportNotrack(ctx, a.tables, a.cfg.ListenPort)
}

// reassertRules checks weft's nftables objects (reading only) and, when any
// chain is gone or short of rules, writes all of them again; it reports
// whether it did, so the loop reconciles (egress NAT is written there).
func (a *Agent) reassertRules(ctx context.Context) (rewrote bool) {
	want := nft.BaseChains(a.cfg.Masquerade, a.cfg.StrictEncryption)
	if a.netpol != nil && a.netpol.Healthy() {
		maps.Copy(want, a.netpol.Enforcer().PolicyChains())
	}
	bad, err := nft.Damaged(ctx, a.tables, want)
	if err != nil {
		a.log.Warn("cannot check weft's nftables objects", "err", err)
		return false
	}
	if len(bad) == 0 {
		return false
	}
	a.metrics.nftReasserts.Inc()
	a.log.Warn("weft's nftables objects were changed outside weft; writing them again", "chains", bad)
	if err := a.ensureBaseRules(ctx); err != nil {
		a.log.Error("cannot restore weft's nftables rules", "err", err)
	}
	a.egress.forget() // the next reconcile rewrites egress NAT
	if a.netpol != nil {
		a.netpol.Enforcer().Forget()
		a.netpol.Poke()
	}
	return true
}
