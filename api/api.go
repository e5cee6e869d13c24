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
