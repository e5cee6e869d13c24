package agent

import (
	"testing"
)

// FuzzSelfCache: self.json, read back at start when the API server is away.
func FuzzSelfCache(f *testing.F) {
	f.Add([]byte(`{"podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"],"internalIP":"10.99.0.11"}`))
	f.Add([]byte(`{"podCIDRs":["0.0.0.0/0"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := parseSelfCache(b)
		if !ok {
			return
		}
		if len(c.cidrs) > 2 || len(c.cidrs) != len(c.PodCIDRs) {
			t.Fatalf("%q gave pod CIDRs %v", b, c.cidrs)
		}
	})
}
