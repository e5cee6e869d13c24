package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/netlab"
)

// CNIResult is ADD and DEL latency, in milliseconds, of one plugin chain.
type CNIResult struct {
	AddMs []float64 `json:"addMs"`
	DelMs []float64 `json:"delMs"`
}

// cniLists returns weft-cni alone (the plugin the agent configured, without
// portmap) and the reference ptp + host-local, both IPv4-only so they do the
// same job: in dual-stack, ptp waits for IPv6 duplicate address detection on
// every ADD (about a second), which would measure DAD rather than the plugin.
func cniLists(n *netlab.Node) (map[string]*libcni.NetworkConfigList, error) {
	_, weft, err := n.CNI("")
	if err != nil {
		return nil, err
	}
	var plug map[string]any
	if err := json.Unmarshal(weft.Plugins[0].Bytes, &plug); err != nil {
		return nil, err
	}
	mtu := plug["mtu"]
	if cidrs, ok := plug["podCIDRs"].([]any); ok && len(cidrs) > 0 {
		plug["podCIDRs"] = cidrs[:1] // the node's IPv4 range
	}
	weftOnly, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "weft", "plugins": []any{plug}})
	ptp, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "ptp", "plugins": []any{map[string]any{
		"type": "ptp", "ipMasq": false, "mtu": mtu,
		"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(n.Dir, "host-local"),
			"ranges": []any{[]any{map[string]any{"subnet": "10.201.0.0/16"}}}},
	}}})
	out := map[string]*libcni.NetworkConfigList{}
	for name, b := range map[string][]byte{"weft-cni": weftOnly, "ptp+host-local": ptp} {
		l, err := libcni.NetworkConfFromBytes(b)
		if err != nil {
			return nil, err
		}
		out[name] = l
	}
	return out, nil
}

// benchCNI times count ADDs then count DELs, parallel at a time, through
// libcni from inside node n, as a runtime calls plugins.
func benchCNI(ctx context.Context, n *netlab.Node, bins string, list *libcni.NetworkConfigList, count, parallel int) (CNIResult, error) {
	cni := libcni.NewCNIConfigWithCacheDir([]string{bins}, filepath.Join(n.Dir, "cni-cache-bench"), nil)
	pods := make([]*netlab.Pod, count)
	for i := range pods {
		p, err := n.NewSandbox(fmt.Sprintf("b%d", i))
		if err != nil {
			return CNIResult{}, err
		}
		pods[i] = p
	}
	var res CNIResult
	var mu sync.Mutex
	run := func(op string) error {
		sem := make(chan struct{}, parallel)
		errs := make(chan error, count)
		var wg sync.WaitGroup
		for _, p := range pods {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var took time.Duration
				err := n.Do(func() error {
					start := time.Now()
					var err error
					if op == "add" {
						_, err = cni.AddNetworkList(ctx, list, p.RuntimeConf())
					} else {
						err = cni.DelNetworkList(ctx, list, p.RuntimeConf())
					}
					took = time.Since(start)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("%s %s: %w", list.Name, op, err)
					return
				}
				mu.Lock()
				if op == "add" {
					res.AddMs = append(res.AddMs, ms(took))
				} else {
					res.DelMs = append(res.DelMs, ms(took))
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	if err := run("add"); err != nil {
		return res, err
	}
	return res, run("del")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
