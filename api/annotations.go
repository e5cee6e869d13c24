package api

// Annotations weft publishes on its own Node and reads from every other.
const (
	// AnnotationPrefix begins every annotation weft reads; the agent's
	// cache of Nodes keeps no others.
	AnnotationPrefix        = "weft.dev/"
	AnnotationPublicKey     = "weft.dev/public-key"
	AnnotationEndpoint      = "weft.dev/endpoint"
	AnnotationGossipAddress = "weft.dev/gossip-address"
	// AnnotationIntraLocation is what the node's agent runs with,
	// --intra-location (encrypted or direct); published by the agent.
	AnnotationIntraLocation = "weft.dev/intra-location"
	// AnnotationLocation names the node's location; an operator sets it,
	// and it overrides the topology label (--topology-label).
	AnnotationLocation = "weft.dev/location"
	// AnnotationBehindNAT ("true") is published by an agent run with
	// --behind-nat: peers use the endpoint its handshakes come from.
	AnnotationBehindNAT = "weft.dev/behind-nat"
	// DefaultTopologyLabel is where a node's location comes from by default.
	DefaultTopologyLabel = "topology.kubernetes.io/zone"
	// MaxAnnotationSize bounds each weft.dev annotation the agent reads.
	MaxAnnotationSize = 256
)

// ConditionReason is the reason of the NetworkUnavailable=False condition weft sets.
const ConditionReason = "WeftIsUp"

// PeerCacheFile holds the last accepted peers in the state directory, so a
// restarted agent restores the mesh before any source has answered.
const PeerCacheFile = "peers.json"

// AwakeFile records, with on-demand peers, the peers on the WireGuard
// device, so a restarted agent writes only those at its start.
const AwakeFile = "awake.json"

// PrivateKeyHint says where a node's private key is (the agent's state
// directory, mode 0600), for configurations that must not carry it.
const PrivateKeyHint = "private.key in weft-agent's --state-dir"
