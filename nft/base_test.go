package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/plan"
)

// The base chains without root, on knftables' fake: what the writers write
// is exactly what the integrity check (Damaged, BaseChains) expects, and a
// chain someone flushed or deleted is reported. The lab's
// TestRulesComeBackAfterFlush proves the same with the real nft.

// writeBase writes every base chain as the agent does at start and at
// each reconcile.
func writeBase(t *testing.T, nft knftables.Interface, masquerade, strict bool) {
	t.Helper()
	ctx := context.Background()
	if err := EnsureAntiSpoof(ctx, nft, "wv", "weft0"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureAgentPortGuard(ctx, nft, "wv", "weft0", 7946, 51820, 51821); err != nil {
		t.Fatal(err)
	}
	if err := EnsureAccounting(ctx, nft, "weft0"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTransportNotrack(ctx, nft, 51820); err != nil {
		t.Fatal(err)
	}
	pods := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}
	if err := ApplyMasquerade(ctx, nft, plan.Egress{Enabled: masquerade, Strict: strict, Tunnel: "weft0",
		PodCIDRs: pods, NoMasquerade: pods, ClusterPods: pods}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBaseChainsMatchTheIntegrityCheck(t *testing.T) {
	ctx := context.Background()
	for _, masq := range []bool{false, true} {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("masquerade=%v,strict=%v", masq, strict), func(t *testing.T) {
				fake := knftables.NewFake(knftables.InetFamily, Table)
				want := BaseChains(masq, strict)
				if bad, err := Damaged(ctx, fake, want); err != nil || len(bad) != len(want) {
					t.Fatalf("an empty table: Damaged reports %v (%v), want all %d chains", bad, err, len(want))
				}
				writeBase(t, fake, masq, strict)
				if bad, err := Damaged(ctx, fake, want); err != nil || len(bad) > 0 {
					t.Fatalf("after writing: Damaged reports %v (%v)", bad, err)
				}
				rules, err := fake.ListRules(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for _, r := range rules {
					got[r.Chain]++
				}
				for chain, n := range want {
					if got[chain] != n {
						t.Errorf("chain %s holds %d rules, the check expects %d: a lost rule would go unseen", chain, got[chain], n)
					}
				}
				// Someone flushes one chain with rules: it is reported, and
				// writing again repairs it.
				for chain, n := range want {
					if n == 0 {
						continue
					}
					tx := fake.NewTransaction()
					tx.Flush(&knftables.Chain{Name: chain})
					if err := fake.Run(ctx, tx); err != nil {
						t.Fatal(err)
					}
					if bad, _ := Damaged(ctx, fake, want); len(bad) != 1 || bad[0] != chain {
						t.Errorf("after flushing %s: Damaged reports %v", chain, bad)
					}
					writeBase(t, fake, masq, strict)
					if bad, _ := Damaged(ctx, fake, want); len(bad) > 0 {
						t.Errorf("after writing again: Damaged reports %v", bad)
					}
				}
			})
		}
	}
}
