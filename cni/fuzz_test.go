package cni

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseConf: weft-cni's stdin. What is accepted has a name, at least
// one pool, an MTU the kernel takes and pools that are network prefixes.
func FuzzParseConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"weft","type":"weft-cni","mtu":1420,"dataDir":"/var/lib/weft/ipam","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"weft","type":"weft-cni","podCIDRs":["10.244.1.7/24"],"extra":1}`))
	f.Add([]byte(`{"cni.dev/valid-attachments":[{"containerID":"x","ifname":"eth0"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConf(b)
		if err != nil {
			return
		}
		if c.Name == "" || len(c.Pools()) == 0 || len(c.Pools()) > 2 {
			t.Fatalf("accepted %q: name %q, pools %v", b, c.Name, c.Pools())
		}
		for _, p := range c.Pools() {
			if p != p.Masked() {
				t.Fatalf("accepted pool %s with host bits", p)
			}
		}
		if filepath.Dir(c.storeDir()) != filepath.Clean(c.DataDir) {
			t.Fatalf("store directory %q is not inside the data directory %q", c.storeDir(), c.DataDir)
		}
	})
}

// FuzzPodIdentity: CNI_ARGS as runtimes pass them.
func FuzzPodIdentity(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc")
	f.Add(";;=;K8S_POD_NAME")
	f.Fuzz(func(t *testing.T, s string) {
		ns, name := podIdentity(s)
		if strings.Contains(ns, ";") || strings.Contains(name, ";") {
			t.Fatalf("%q gave %q/%q", s, ns, name)
		}
	})
}
