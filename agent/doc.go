// Package agent is weft's node agent: the wiring and the appliers. Sources
// (gossip.go, kube.go) only observe and report claims to a peer.Registry,
// which judges them; plan computes the desired data plane from the
// registry's view (pure); the agent's loop (loop.go) hands it to mesh
// (WireGuard, addresses, routes) and nft (the egress NAT), writes the
// conflist, and publishes this node's annotations and condition. The
// NetworkPolicy controller (netpol.go, attachments.go, socket.go) snapshots
// its informers and weft-cni's attachments, plans with plan.Policy and
// programs with nft.Enforcer. http.go serves health, metrics and the peers.
package agent
