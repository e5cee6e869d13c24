package plan

import (
	"encoding/json"
	"net/netip"

	"github.com/weftnet/weft/api"
)

// ConfInput is what the conflist depends on.
type ConfInput struct {
	PodCIDRs    []netip.Prefix
	MTU         int
	DataDir     string // weft-cni's IPAM directory
	ReadyURL    string // the agent's /readyz
	AgentSocket string // empty unless the agent enforces NetworkPolicy
}

// ConfList renders the conflist: weft-cni with this node's pod CIDRs, the
// tunnel MTU and its IPAM directory, then portmap for hostPort.
func ConfList(in ConfInput) ([]byte, error) {
	list := api.ConfList{
		// cniVersion 1.0.0 for runtimes whose libcni predates 1.2
		// (containerd 1.6 and 1.7 refuse a 1.1.0 result, "unsupported CNI
		// result version", as the kind suite's containerd showed);
		// cniVersions lets libcni 1.2+ (containerd 2, CRI-O) pick 1.1.0 and
		// with it GC and STATUS.
		CNIVersion:  api.ConfVersion,
		CNIVersions: api.ConfVersions,
		Name:        api.NetworkName,
		Plugins: []any{
			api.WeftPlugin{Type: api.PluginType, WeftConf: api.WeftConf{
				PodCIDRs: api.PrefixStrings(in.PodCIDRs), MTU: in.MTU, DataDir: in.DataDir, ReadyURL: in.ReadyURL, AgentSocket: in.AgentSocket,
			}},
			api.PortmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: true},
		},
	}
	return json.MarshalIndent(list, "", "  ")
}
