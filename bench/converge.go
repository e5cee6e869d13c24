package bench

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/netlab"
)

// convergence starts a new node's agent and returns the time until a packet
// from every running weft node reaches the new node's pod range.
func (l *Lab) convergence(ctx context.Context, name string) (time.Duration, error) {
	n, err := l.AddNode(name)
	if err != nil {
		return 0, err
	}
	dst := api.FirstAddress(n.PodCIDRs[0])
	start := time.Now()
	proc, err := n.Start(filepath.Join(l.bins, "weft-agent"), n.AgentArgs(l.gossipKey, l.weftNodes[0])...)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	var firstErr error
	for _, from := range l.weftNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := firstPacket(ctx, from, dst, start, 30*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			worst = max(worst, d)
		}()
	}
	wg.Wait()
	l.weftNodes = append(l.weftNodes, n)
	l.agents = append(l.agents, proc)
	return worst, firstErr
}

// firstPacket pings dst every 20 ms (each with a 100 ms wait) until one answers.
func firstPacket(ctx context.Context, from *netlab.Node, dst netip.Addr, start time.Time, timeout time.Duration) (time.Duration, error) {
	for time.Since(start) < timeout {
		if from.Ping(ctx, dst, 1, 100*time.Millisecond) {
			return time.Since(start), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s never reached %s", from.Name, dst)
}
