// Package api holds the types of weft-agent's HTTP API, shared by the agent
// and weftctl without pulling the agent's dependencies into the CLI.
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
