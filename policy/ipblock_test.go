package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestIPBlockMatchesMembership: for random blocks and exceptions, an
// address is in the result exactly when it is in the CIDR and in no
// exception, and the result's prefixes are disjoint.
func TestIPBlockMatchesMembership(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(256)), byte(r.IntN(256))}) }
	for range 200 {
		cidr := netip.PrefixFrom(addr(), 16+r.IntN(8)).Masked()
		var except []string
		var ex []netip.Prefix
		for range r.IntN(30) {
			p := netip.PrefixFrom(addr(), 14+r.IntN(19)).Masked()
			except = append(except, p.String())
			ex = append(ex, p)
		}
		got, err := ipBlock(&networkingv1.IPBlock{CIDR: cidr.String(), Except: except})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			for j := range got {
				if i != j && got[i].Overlaps(got[j]) {
					t.Fatalf("%s except %v: %s and %s overlap", cidr, except, got[i], got[j])
				}
			}
		}
		for range 500 {
			a := addr()
			want := cidr.Contains(a)
			for _, e := range ex {
				want = want && !e.Contains(a)
			}
			in := false
			for _, p := range got {
				in = in || p.Contains(a)
			}
			if in != want {
				t.Fatalf("%s except %v: %s in result = %v, want %v", cidr, except, a, in, want)
			}
		}
	}
}

// TestIPBlockHostileExceptsAreBounded: the policy a tenant can write to
// stall a node (2000 single-address holes in ::/0, about 230 000 prefixes)
// is refused quickly, so its rule admits nothing, and 2000 holes in a /16
// still compile.
func TestIPBlockHostileExceptsAreBounded(t *testing.T) {
	var holes6, holes4 []string
	for i := range 2000 {
		holes6 = append(holes6, fmt.Sprintf("2001:db8::%x:%x/128", i, i*7919%65536))
		holes4 = append(holes4, fmt.Sprintf("10.%d.%d.%d/32", 10, i/250, i%250))
	}
	start := time.Now()
	_, err := ipBlock(&networkingv1.IPBlock{CIDR: "::/0", Except: holes6})
	if err == nil || !strings.Contains(err.Error(), "admits nothing") {
		t.Fatalf("err = %v; want the block refused as too large", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %v; the work must be bounded", d)
	}
	got, err := ipBlock(&networkingv1.IPBlock{CIDR: "10.10.0.0/16", Except: holes4})
	if err != nil || len(got) == 0 {
		t.Fatalf("2000 /32 holes in a /16: %d prefixes, %v", len(got), err)
	}
}

func BenchmarkIPBlock2000Excepts(b *testing.B) {
	var holes []string
	for i := range 2000 {
		holes = append(holes, fmt.Sprintf("10.%d.%d.%d/32", 10, i/250, i%250))
	}
	blk := &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: holes}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ipBlock(blk); err != nil {
			b.Fatal(err)
		}
	}
}
