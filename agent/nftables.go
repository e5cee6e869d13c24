package agent

import (
	"context"
	"maps"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/nft"
)

// integrityInterval is how often the agent checks that weft's nftables
// objects are still there: after `nft flush ruleset` or a deleted table,
// anti-spoofing, the port guard, egress NAT and NetworkPolicy come back
// within this time, not at the next restart.
const integrityInterval = 10 * time.Second

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
