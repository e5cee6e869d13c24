// Package api holds the contracts that cross weft's packages and programs:
// the agent's HTTP and socket APIs, the CNI conflist schema, the Node
// annotations, the names of files and links others look for, and the
// address helpers both sides of a contract must compute alike. It depends
// on nothing but the standard library's pure packages, so any program can
// import it without linking the agent's dependencies.
package api

// PeerStatus is one entry of GET /v1/peers.
type PeerStatus struct {
	Name            string   `json:"name"`
	PublicKey       string   `json:"publicKey"`
	Endpoint        string   `json:"endpoint"`
	PodCIDRs        []string `json:"podCIDRs"`
	LatestHandshake string   `json:"latestHandshake"` // RFC 3339; empty when none
	Source          string   `json:"source"`
	RxBytes         int64    `json:"rxBytes"`
	TxBytes         int64    `json:"txBytes"`
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
