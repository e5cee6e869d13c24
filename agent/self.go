package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/source/kube"
)

// learnSelf reads this node's pod CIDRs and InternalIP from its Node (flags
// override). While the API server does not answer it falls back to what it
// learned last time, so a restarted agent comes back without the API.
func (a *Agent) learnSelf(ctx context.Context) error {
	// The Node's location as last told to the loop: set below, before the
	// informer that calls onLocation starts (kube.Source.Start).
	var last string
	onLocation := func(loc string) { // informer goroutine; the loop owns a.self
		if loc != last {
			last = loc
			select {
			case <-a.selfLocation: // replace a value the loop has not taken yet
			default:
			}
			a.selfLocation <- loc
		}
	}
	a.kube = kube.New(a.clients, a.cfg.NodeName, a.cfg.TopologyLabel, peer.IntraLocation(a.cfg.IntraDirect), onLocation, a.log)
	cachePath := filepath.Join(a.cfg.StateDir, "self.json")
	var cidrs []netip.Prefix
	var ip netip.Addr
	var loc string
	attempt := 0
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		defer func() { attempt++ }()
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		node, err := a.kube.FetchSelf(fctx)
		cancel()
		if err == nil {
			if cidrs, ip, err = peer.SelfFromNode(node); err != nil {
				return false, err
			}
			if loc, err = peer.LocationOf(node, a.cfg.TopologyLabel); err != nil {
				return false, fmt.Errorf("this Node's location: %v", err)
			}
			b, _ := json.Marshal(selfCache{PodCIDRs: api.PrefixStrings(cidrs), InternalIP: ip.String(), Location: loc})
			if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
				return false, fmt.Errorf("state dir: %w", err)
			}
			if err := atomicfile.Write(cachePath, b, 0o600); err != nil {
				a.log.Warn("cannot cache this Node; a restart without the API server will wait for it", "err", err)
			}
			return true, nil
		}
		if c, ok := loadSelfCache(cachePath); ok {
			a.log.Warn("API server unreachable; starting from the cached Node", "err", err)
			cidrs, ip, loc = c.cidrs, c.ip, c.Location
			return true, nil
		}
		if attempt%10 == 0 {
			a.log.Warn("waiting for the API server to read this Node", "node", a.cfg.NodeName, "err", err)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if len(a.cfg.PodCIDRs) == 0 {
		a.cfg.PodCIDRs = cidrs
	}
	a.cfg.Location = loc
	last = loc
	if !a.cfg.AdvertiseAddress.IsValid() {
		a.cfg.AdvertiseAddress = ip
	}
	if len(a.cfg.PodCIDRs) == 0 {
		return errNoPodCIDRs
	}
	return nil
}

type selfCache struct {
	PodCIDRs   []string `json:"podCIDRs"`
	InternalIP string   `json:"internalIP"`
	Location   string   `json:"location,omitempty"`
	cidrs      []netip.Prefix
	ip         netip.Addr
}

func loadSelfCache(path string) (selfCache, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return selfCache{}, false
	}
	return parseSelfCache(b)
}

// parseSelfCache reads self.json: this node's pod CIDRs and InternalIP as
// last read from its Node.
func parseSelfCache(b []byte) (selfCache, bool) {
	if len(b) > 4096 {
		return selfCache{}, false
	}
	var c selfCache
	var err error
	if json.Unmarshal(b, &c) != nil {
		return selfCache{}, false
	}
	if c.cidrs, err = peer.ParsePodCIDRs(c.PodCIDRs); err != nil {
		return selfCache{}, false
	}
	c.ip, _ = netip.ParseAddr(c.InternalIP)
	if _, err := peer.ParseLocation(c.Location); err != nil {
		return selfCache{}, false
	}
	return c, true
}

var errNoPodCIDRs = errors.New("no pod CIDRs: the Node has no spec.podCIDRs and --pod-cidr is not given")
