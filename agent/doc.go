// Package agent is weft's control plane on one node. Sources (gossip, and
// later the Kubernetes API) only observe; the Registry is the one place where
// what they claim is validated and merged; Plan turns the Registry's view into
// the desired mesh.State; the agent hands that to mesh to apply and serves
// health, metrics and the peer list over HTTP.
package agent
