package config

import (
	"errors"
	"flag"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/keys"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsDefaults(t *testing.T) {
	c, err := Parse([]string{"--node-name", "node1", "--pod-cidr", "10.244.1.0/24,fd00:10:244:1::/64", "--insecure-gossip"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenPort != 51820 || c.GossipPort != 7946 || c.Interface != "weft0" || c.StateDir != "/var/lib/weft" ||
		c.RunDir != "/var/run/wireguard" || c.CNIConfDir != "/etc/cni/net.d" || c.HTTPAddr != ":9587" || c.MTU != 0 {
		t.Errorf("defaults differ from the documented contract: %+v", c)
	}
	if len(c.PodCIDRs) != 2 || c.PodCIDRs[1] != netip.MustParsePrefix("fd00:10:244:1::/64") {
		t.Errorf("pod CIDRs = %v", c.PodCIDRs)
	}
}

func TestParse(t *testing.T) {
	base := []string{"--pod-cidr", "10.244.1.0/24", "--insecure-gossip"}
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		want  string // error substring; "" for success
		check func(t *testing.T, c Config)
	}{
		{"node name from env", nil, map[string]string{"NODE_NAME": "from-env"}, "", func(t *testing.T, c Config) {
			if c.NodeName != "from-env" {
				t.Errorf("node name %q", c.NodeName)
			}
		}},
		{"repeated pod-cidr", []string{"--node-name", "n", "--pod-cidr", "fd00:1::/64"}, nil, "", func(t *testing.T, c Config) {
			if len(c.PodCIDRs) != 2 {
				t.Errorf("pod CIDRs %v", c.PodCIDRs)
			}
		}},
		{"join gets default port", []string{"--node-name", "n", "--join", "10.0.0.1,10.0.0.2:8000,[fd00::1]:7000,fd00::2"}, nil, "", func(t *testing.T, c Config) {
			w := []string{"10.0.0.1:7946", "10.0.0.2:8000", "[fd00::1]:7000", "[fd00::2]:7946"}
			if strings.Join(c.Join, " ") != strings.Join(w, " ") {
				t.Errorf("join = %v, want %v", c.Join, w)
			}
		}},
		{"advertise address", []string{"--node-name", "n", "--advertise-address", "10.99.0.11"}, nil, "", func(t *testing.T, c Config) {
			if c.AdvertiseAddress != netip.MustParseAddr("10.99.0.11") {
				t.Errorf("advertise %v", c.AdvertiseAddress)
			}
		}},
		{"upper-case node name", []string{"--node-name", "Node1"}, nil, "--node-name", nil},
		{"node name with slash", []string{"--node-name", "a/b"}, nil, "--node-name", nil},
		{"bad advertise address", []string{"--node-name", "n", "--advertise-address", "nope"}, nil, "--advertise-address", nil},
		{"multicast advertise address", []string{"--node-name", "n", "--advertise-address", "224.0.0.1"}, nil, "--advertise-address", nil},
		{"pod cidr /31", []string{"--node-name", "n", "--pod-cidr", "10.1.0.0/31"}, nil, "too small", nil},
		{"loopback pod cidr", []string{"--node-name", "n", "--pod-cidr", "127.0.0.0/8"}, nil, "not a unicast range", nil},
		{"port 0", []string{"--node-name", "n", "--listen-port", "0"}, nil, "--listen-port 0", nil},
		{"port 70000", []string{"--node-name", "n", "--gossip-port", "70000"}, nil, "--gossip-port 70000", nil},
		{"mtu too small", []string{"--node-name", "n", "--mtu", "500"}, nil, "--mtu 500", nil},
		{"relative state dir", []string{"--node-name", "n", "--state-dir", "state"}, nil, "--state-dir", nil},
		{"bad http addr", []string{"--node-name", "n", "--http-addr", "9587"}, nil, "--http-addr", nil},
		{"bad log level", []string{"--node-name", "n", "--log-level", "loud"}, nil, "--log-level", nil},
		{"stray argument", []string{"--node-name", "n", "extra"}, nil, `unexpected argument "extra"`, nil},
		{"key file and insecure", []string{"--node-name", "n", "--gossip-key-file", "/k"}, nil, "contradict", nil},
		{"join without host", []string{"--node-name", "n", "--join", ":7946"}, nil, "--join", nil},
		{"pq defaults", []string{"--node-name", "n"}, nil, "", func(t *testing.T, c Config) {
			if c.PQ != keys.Preferred || c.PQPort != 51821 || c.PSKRotation != 3*time.Minute || c.KeyRotation != 0 {
				t.Errorf("pq %q port %d psk rotation %v key rotation %v", c.PQ, c.PQPort, c.PSKRotation, c.KeyRotation)
			}
		}},
		{"pq required", []string{"--node-name", "n", "--pq", "required", "--key-rotation", "24h"}, nil, "", func(t *testing.T, c Config) {
			if c.PQ != keys.Required || c.KeyRotation != 24*time.Hour {
				t.Errorf("pq %q key rotation %v", c.PQ, c.KeyRotation)
			}
		}},
		{"bad pq mode", []string{"--node-name", "n", "--pq", "yes"}, nil, `--pq "yes"`, nil},
		{"pq port is the gossip port", []string{"--node-name", "n", "--pq-port", "7946"}, nil, "--pq-port 7946", nil},
		{"psk rotation too fast", []string{"--node-name", "n", "--psk-rotation", "10ms"}, nil, "--psk-rotation 10ms", nil},
		{"key rotation too fast", []string{"--node-name", "n", "--key-rotation", "1s"}, nil, "--key-rotation 1s", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(append(append([]string{}, base...), tc.args...), env(tc.env))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestParseFlagsHelpListsTheFlags(t *testing.T) {
	_, err := Parse([]string{"--help"}, env(nil))
	var ue *UsageError
	if !errors.As(err, &ue) || !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: err = %v, want a UsageError", err)
	}
	for _, want := range []string{"-listen-port", "-pod-cidr", "-gossip-key-file", "install-cni", "ensure-gossip-key"} {
		if !strings.Contains(ue.Text, want) {
			t.Errorf("usage does not name %s:\n%s", want, ue.Text)
		}
	}
}
