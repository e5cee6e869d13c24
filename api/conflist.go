package api

// The CNI conflist the agent writes and weft-cni reads: one schema, so that
// renaming a key on one side fails to compile on the other.

// ConfFile is the conflist the agent writes once its mesh is ready.
const ConfFile = "10-weft.conflist"

// ConfVersion is the conflist's cniVersion: the newest version every
// runtime weft supports accepts (containerd 1.6+, CRI-O). ConfVersions is
// its cniVersions list, from which runtimes with libcni 1.2+ take the newest
// they implement.
const ConfVersion = "1.0.0"

// ConfVersions: see ConfVersion.
var ConfVersions = []string{"1.0.0", "1.1.0"}

// NetworkName is the network name in the conflist (and the IPAM subdirectory).
const NetworkName = "weft"

// PluginType is weft-cni's type in the conflist.
const PluginType = "weft-cni"

// HostVethPrefix starts the name of every host-side veth weft-cni creates;
// the agent's anti-spoofing rules match it.
const HostVethPrefix = "wv"

// ConfList is the conflist: weft-cni, then portmap for hostPort.
type ConfList struct {
	CNIVersion  string   `json:"cniVersion"`
	CNIVersions []string `json:"cniVersions"`
	Name        string   `json:"name"`
	Plugins     []any    `json:"plugins"` // WeftPlugin, PortmapPlugin
}

// WeftConf is weft-cni's own part of its plugin configuration (the CNI
// spec's common keys come beside it).
type WeftConf struct {
	PodCIDRs []string `json:"podCIDRs"`
	MTU      int      `json:"mtu"`
	DataDir  string   `json:"dataDir"`
	ReadyURL string   `json:"readyURL,omitempty"`
	// AgentSocket is the agent's Unix socket; when set, each ADD waits for
	// the agent to program the pod's NetworkPolicy.
	AgentSocket string `json:"agentSocket,omitempty"`
}

// WeftPlugin is weft-cni's entry in the conflist.
type WeftPlugin struct {
	Type string `json:"type"`
	WeftConf
}

// PortmapPlugin is the reference portmap plugin's entry (hostPort).
type PortmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	SNAT         bool            `json:"snat"`
}
