package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/weftnet/weft/internal/netlab"
)

// The parts of the agent's CPU profile the report tells apart. A sample
// belongs to the first part one of its frames matches, in this order:
// weft's own code (which also calls into wireguard-go to configure it),
// wireguard-go's data path with its crypto, and the Go runtime (GC and
// scheduler) when every frame is the runtime's. What is left is other
// libraries (memberlist, net/http...).
var profileParts = []struct{ name, prefix string }{
	{partWeft, "github.com/weftnet/weft/"},
	{partWireGuard, "golang.zx2c4.com/wireguard/"},
	{partWireGuard, "github.com/tailscale/wireguard-go/"}, // the fork, when weft is built on it
}

// The names of the parts, as keys of AgentProfile.Shares.
const (
	partWeft      = "weft"
	partWireGuard = "wireguard-go"
	partRuntime   = "Go runtime"
	partOther     = "other"
)

// AgentProfile is where one weft agent's CPU time went while it carried
// the 1-stream TCP runs, from its /debug/pprof/profile (the bench starts
// its agents with --pprof-addr).
type AgentProfile struct {
	Side    string             `json:"side"`    // "client" (encrypts) or "server" (decrypts)
	Seconds float64            `json:"seconds"` // CPU seconds sampled
	Shares  map[string]float64 `json:"shares"`  // part → fraction of Seconds
	File    string             `json:"file"`    // the merged profile, for go tool pprof
	merged  *profile.Profile
}

// profileAgent fetches a CPU profile of d from the agent of n.
func profileAgent(ctx context.Context, n *netlab.Node, d time.Duration) (*profile.Profile, error) {
	secs := max(1, int(d.Seconds()))
	client := &http.Client{Timeout: time.Duration(secs)*time.Second + 15*time.Second,
		Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", netlab.AgentPprof, secs), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile the agent on %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("profile the agent on %s: %s", n.Name, resp.Status)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("profile the agent on %s: %w", n.Name, err)
	}
	return p, nil
}

// add merges p into the side's profile.
func (a *AgentProfile) add(p *profile.Profile) error {
	if a.merged == nil {
		a.merged = p
		return nil
	}
	m, err := profile.Merge([]*profile.Profile{a.merged, p})
	if err != nil {
		return err
	}
	a.merged = m
	return nil
}

// summarize fills Seconds and Shares from the merged profile.
func (a *AgentProfile) summarize() {
	if a.merged == nil {
		return
	}
	cpu := -1
	for i, st := range a.merged.SampleType {
		if st.Type == "cpu" {
			cpu = i
		}
	}
	if cpu < 0 {
		return
	}
	ns := map[string]int64{}
	var total int64
	for _, s := range a.merged.Sample {
		v := s.Value[cpu]
		total += v
		ns[classify(s)] += v
	}
	a.Seconds = float64(total) / 1e9
	a.Shares = map[string]float64{}
	for part, v := range ns {
		if total > 0 {
			a.Shares[part] = float64(v) / float64(total)
		}
	}
}

// classify names the part of the agent a sample belongs to.
func classify(s *profile.Sample) string {
	var funcs []string
	for _, loc := range s.Location { // leaf first
		for _, line := range loc.Line {
			if line.Function != nil {
				funcs = append(funcs, line.Function.Name)
			}
		}
	}
	// wireguard-go's every send passes through weft's bind wrapper; what
	// runs below it is wireguard-go's work, only the wrapper's own frames
	// are weft's.
	for i, f := range funcs {
		if strings.HasPrefix(f, bindWrapper) {
			if slices.ContainsFunc(funcs[:i], func(g string) bool {
				return strings.HasPrefix(g, "golang.zx2c4.com/wireguard/") || strings.HasPrefix(g, "github.com/tailscale/wireguard-go/")
			}) {
				funcs = funcs[:i] // below the wrapper, in wireguard-go's bind
			}
			break
		}
	}
	for _, part := range profileParts {
		for _, f := range funcs {
			if strings.HasPrefix(f, part.prefix) {
				return part.name
			}
		}
	}
	for _, f := range funcs {
		if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/") && !strings.HasPrefix(f, "sync.") {
			return partOther
		}
	}
	return partRuntime
}

// bindWrapper is mesh's wrapper of wireguard-go's bind (mesh/bind.go).
const bindWrapper = "github.com/weftnet/weft/mesh.(*pathBind)."

// write stores the merged profile as path.
func (a *AgentProfile) write(path string) error {
	if a.merged == nil {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := a.merged.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
