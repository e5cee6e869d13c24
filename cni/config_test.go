package cni

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/plan"
)

// TestParseConfReadsWhatTheAgentWrites: the agent's conflist (plan.ConfList)
// and weft-cni's parser share one schema; a plugin entry as libcni hands it
// to weft-cni parses back to the same values.
func TestParseConfReadsWhatTheAgentWrites(t *testing.T) {
	in := plan.ConfInput{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		MTU: 1420, DataDir: "/var/lib/weft/ipam", ReadyURL: "http://127.0.0.1:9587/readyz", AgentSocket: "/var/lib/weft/agent.sock"}
	b, err := plan.ConfList(in)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	var entry map[string]any
	if err := json.Unmarshal(list.Plugins[0], &entry); err != nil {
		t.Fatal(err)
	}
	entry["cniVersion"], entry["name"] = list.CNIVersion, list.Name // as libcni injects them
	eb, _ := json.Marshal(entry)
	c, err := ParseConf(eb)
	if err != nil {
		t.Fatalf("ParseConf of the agent's own conflist: %v", err)
	}
	if c.Type != Type || c.MTU != in.MTU || c.DataDir != in.DataDir || c.ReadyURL != in.ReadyURL || c.AgentSocket != in.AgentSocket ||
		len(c.Pools()) != 2 || c.Pools()[0] != in.PodCIDRs[0] || c.Pools()[1] != in.PodCIDRs[1] {
		t.Fatalf("parsed %+v, pools %v; want %+v", c.WeftConf, c.Pools(), in)
	}
}

func TestParseConfRefuses(t *testing.T) {
	base := `{"cniVersion":"1.0.0","name":"weft","type":"weft-cni","podCIDRs":["10.244.1.0/24"],"mtu":1420,"dataDir":"/var/lib/weft/ipam"`
	for name, tc := range map[string]struct{ conf, want string }{
		"not JSON":        {`{`, "not valid JSON"},
		"unknown key":     {base + `,"bogus":1}`, "unknown field"},
		"host bits":       {strings.Replace(base, "10.244.1.0/24", "10.244.1.9/24", 1) + `}`, "not a network CIDR"},
		"two v4":          {strings.Replace(base, `"10.244.1.0/24"`, `"10.244.1.0/24","10.244.2.0/24"`, 1) + `}`, "one CIDR per address family"},
		"tiny pool":       {strings.Replace(base, "10.244.1.0/24", "10.244.1.0/31", 1) + `}`, "too small"},
		"mtu":             {strings.Replace(base, "1420", "100", 1) + `}`, "mtu 100"},
		"relative dir":    {strings.Replace(base, "/var/lib/weft/ipam", "ipam", 1) + `}`, "absolute path"},
		"bad name":        {strings.Replace(base, `"name":"weft"`, `"name":"../x"`, 1) + `}`, "name"},
		"ready URL https": {base + `,"readyURL":"https://x/readyz"}`, "readyURL"},
	} {
		if _, err := ParseConf([]byte(tc.conf)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a, b := HostVethName("c1", "eth0"), HostVethName("c1", "eth1")
	if a == b || a != HostVethName("c1", "eth0") || len(a) != 15 || !strings.HasPrefix(a, HostVethPrefix) {
		t.Fatalf("HostVethName: %q %q", a, b)
	}
}

func TestPodIdentity(t *testing.T) {
	ns, name := podIdentity("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x")
	if ns != "default" || name != "web-0" {
		t.Fatalf("podIdentity = %q %q", ns, name)
	}
	if ns, name := podIdentity(""); ns != "" || name != "" {
		t.Fatalf("podIdentity of nothing = %q %q", ns, name)
	}
}
