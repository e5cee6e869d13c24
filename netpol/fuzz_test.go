package netpol

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/api"
)

// FuzzAttachment: what weft-cni sends on the agent socket (and the agent
// saves and reads back). An accepted attachment holds one or two of this
// node's pod addresses, never the node's own.
func FuzzAttachment(f *testing.F) {
	f.Add([]byte(`{"containerID":"c1","ifName":"eth0","namespace":"default","name":"web-0","ips":["10.244.1.5","fd00:10:244:1::5"]}`))
	f.Add([]byte(`{"containerID":"c1","ifName":"eth0","ips":["10.244.1.1"]}`))
	f.Add([]byte(`{"containerID":"c1","ifName":"eth0","namespace":"Default","name":"x","ips":["10.244.2.5"]}`))
	n := &Controller{
		local: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		own:   []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("fd00:10:244:1::1")},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in api.Attachment
		if json.NewDecoder(bytes.NewReader(b)).Decode(&in) != nil {
			return
		}
		a := attachment{Attachment: in}
		if n.validate(&a) != nil {
			return
		}
		if len(a.ips) == 0 || len(a.ips) > 2 {
			t.Fatalf("accepted %d addresses", len(a.ips))
		}
		for _, ip := range a.ips {
			if !n.isLocalAddr(ip) || slices.Contains(n.own, ip) {
				t.Fatalf("accepted %s, not a pod address of this node", ip)
			}
		}
	})
}
