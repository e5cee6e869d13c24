package bench

import (
	"math"
	"testing"

	"github.com/google/pprof/profile"
)

func sample(ns int64, funcs ...string) *profile.Sample {
	s := &profile.Sample{Value: []int64{1, ns}}
	for _, f := range funcs {
		s.Location = append(s.Location, &profile.Location{Line: []profile.Line{{Function: &profile.Function{Name: f}}}})
	}
	return s
}

func TestAgentProfileShares(t *testing.T) {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Sample: []*profile.Sample{
			// Leaf first, as in pprof.
			sample(6e9, "golang.org/x/crypto/chacha20poly1305.chacha20Poly1305Seal", "golang.zx2c4.com/wireguard/device.(*Device).RoutineEncryption"),
			sample(1e9, "runtime.mallocgc", "golang.zx2c4.com/wireguard/device.(*Peer).RoutineSequentialSender"),
			sample(1e9, "runtime.gcBgMarkWorker"),
			// weft configuring wireguard-go is weft's work.
			sample(1e9, "golang.zx2c4.com/wireguard/device.(*Device).IpcGetOperation", "github.com/weftnet/weft/mesh.(*Device).serveUAPI"),
			sample(1e9, "runtime.memmove", "github.com/hashicorp/memberlist.(*Memberlist).gossip"),
			// A send below weft's bind wrapper is wireguard-go's; the
			// wrapper's own frames are weft's.
			sample(1e9, "syscall.Syscall6", "golang.zx2c4.com/wireguard/conn.(*StdNetBind).send", "github.com/weftnet/weft/mesh.(*pathBind).Send",
				"golang.zx2c4.com/wireguard/device.(*Peer).SendBuffers"),
			sample(1e9, "sync.(*Mutex).Lock", "github.com/weftnet/weft/mesh.(*pathBind).isSmall", "github.com/weftnet/weft/mesh.(*pathBind).Send",
				"golang.zx2c4.com/wireguard/device.(*Peer).SendBuffers"),
		},
	}
	a := &AgentProfile{Side: "client"}
	if err := a.add(p); err != nil {
		t.Fatal(err)
	}
	a.summarize()
	want := map[string]float64{"wireguard-go": 8.0 / 12, "Go runtime": 1.0 / 12, "weft": 2.0 / 12, "other": 1.0 / 12}
	if a.Seconds != 12 {
		t.Errorf("seconds = %v, want 12", a.Seconds)
	}
	for part, w := range want {
		if math.Abs(a.Shares[part]-w) > 1e-9 {
			t.Errorf("share of %s = %v, want %v (all: %v)", part, a.Shares[part], w, a.Shares)
		}
	}
}
