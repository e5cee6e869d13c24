// Package api holds the contracts that cross weft's packages and programs:
// the agent's HTTP and socket APIs, the CNI conflist schema, the Node
// annotations, the names of files and links others look for, and the
// address helpers both sides of a contract must compute alike. It depends
// on nothing but the standard library's pure packages, so any program can
// import it without linking the agent's dependencies.
package api

// PeerStatus is one entry of GET /v1/peers (and of Status.Peers).
type PeerStatus struct {
	Name      string `json:"name"`
	PublicKey string `json:"publicKey"`
	// Endpoint is where the tunnel sends: the device's endpoint, which
	// WireGuard may have learned from the peer's packets (behind NAT);
	// AnnouncedEndpoint is what the peer's Node or gossip claims.
	Endpoint          string   `json:"endpoint"`
	AnnouncedEndpoint string   `json:"announcedEndpoint"`
	PodCIDRs          []string `json:"podCIDRs"`
	LatestHandshake   string   `json:"latestHandshake"` // RFC 3339; empty when none
	Source            string   `json:"source"`
	RxBytes           int64    `json:"rxBytes"`
	TxBytes           int64    `json:"txBytes"`
	Location          string   `json:"location,omitempty"`
	// Path is how pod traffic travels: encrypted (the tunnel), direct (the
	// underlay, same location) or external (a Peer object).
	Path string `json:"path"`
	// IntraLocation is the peer's --intra-location (encrypted or direct).
	IntraLocation string `json:"intraLocation,omitempty"`
	// MTU is what the path to the peer carries for pod packets: the
	// tunnel's, lower when the path MTU was found smaller, the underlay's
	// on a direct path.
	MTU int `json:"mtu"`
	// PresharedKey: the device holds a post-quantum preshared key for the
	// peer; PresharedKeyAgeSeconds is how long ago it was agreed, and
	// PresharedKeyError the last exchange's failure (cleared by success).
	PresharedKey           bool   `json:"presharedKey"`
	PresharedKeyAgeSeconds int64  `json:"presharedKeyAgeSeconds,omitempty"`
	PresharedKeyError      string `json:"presharedKeyError,omitempty"`
	// Resting: the peer is off the WireGuard device while idle
	// (--on-demand-after); a packet to it or its handshake brings it back.
	Resting bool `json:"resting,omitempty"`
	// Idle: with on-demand peers, the peer carried nothing lately (it
	// rests once its last handshake is 3 min old): its handshake ages
	// without anything being wrong.
	Idle bool `json:"idle,omitempty"`
}

// NodeStatus is this node as its agent runs it (Status.Node).
type NodeStatus struct {
	Name             string   `json:"name"`
	Version          string   `json:"version"` // the agent's (WEFT_VERSION, "dev" when unset)
	PublicKey        string   `json:"publicKey"`
	Endpoint         string   `json:"endpoint"`
	PodCIDRs         []string `json:"podCIDRs"`
	Location         string   `json:"location,omitempty"`
	IntraLocation    string   `json:"intraLocation"`
	StrictEncryption bool     `json:"strictEncryption"`
	Ready            bool     `json:"ready"`
	MTU              int      `json:"mtu"` // the tunnel's
	// PQ is the --pq mode (off, preferred, required); KeyAgeSeconds how
	// long the node has had its WireGuard key.
	PQ                 string `json:"pq"`
	PSKRotationSeconds int64  `json:"pskRotationSeconds"`
	KeyAgeSeconds      int64  `json:"keyAgeSeconds"`
	// Traffic is what weft's nftables counters saw since they were
	// created (nil when they cannot be read).
	Traffic *Traffic `json:"traffic,omitempty"`
}

// Count is packets and bytes.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Traffic is the proof of encryption, per node: where its pods' packets
// left, and what weft dropped. Plaintext counts any packet that left the
// node for another node's pods neither through the tunnel nor on a direct
// path: it must read 0.
type Traffic struct {
	Tunnel      Count `json:"tunnel"`      // this node's pods into the tunnel
	Direct      Count `json:"direct"`      // this node's pods to a direct peer's pods, on the underlay
	Plaintext   Count `json:"plaintext"`   // to other nodes' pods in the clear, outside direct paths
	StrictDrops Count `json:"strictDrops"` // dropped by --strict-encryption instead
	PolicyDrops Count `json:"policyDrops"` // dropped by NetworkPolicy
}

// Status is GET /v1/status: this node and its peers.
type Status struct {
	Node  NodeStatus   `json:"node"`
	Peers []PeerStatus `json:"peers"`
}

// Attachment is what weft-cni tells the agent over its Unix socket: POST
// /v1/attachments after an ADD (the agent answers once the pod's
// NetworkPolicy is in the data plane) and DELETE after a DEL.
type Attachment struct {
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifName"`
	Namespace   string   `json:"namespace,omitempty"` // K8S_POD_NAMESPACE; empty outside Kubernetes
	Name        string   `json:"name,omitempty"`      // K8S_POD_NAME
	IPs         []string `json:"ips,omitempty"`
}

// AttachmentsPath is the socket API's resource for attachments.
const AttachmentsPath = "/v1/attachments"

// AgentSocket is the agent's Unix socket in its state directory, through
// which weft-cni reports attachments. Only root on the node can reach it,
// unlike the HTTP port, so a pod cannot claim another pod's identity.
const AgentSocket = "agent.sock"

// ControlSocket is the agent's Unix socket in its state directory for
// requests that change the node (POST RotateKeyPath): root only, like
// AgentSocket. The HTTP port, which every process and hostNetwork pod on
// the node can reach from loopback, only reads.
const ControlSocket = "control.sock"

// RotateKeyPath asks the agent, on ControlSocket, for a new node key.
const RotateKeyPath = "/v1/rotate-key"

// PathBetween is how pod traffic travels between two nodes: "direct" only
// when both share a named location and both run --intra-location=direct,
// else "encrypted". Both ends compute it alike (peer.Path is this rule).
func PathBetween(locA string, directA bool, locB string, directB bool) string {
	if locA != "" && locA == locB && directA && directB {
		return "direct"
	}
	return "encrypted"
}
