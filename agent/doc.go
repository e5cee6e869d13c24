// Package agent is weft's node agent: the composition root that builds the
// rooms and owns the loop. Sources (packages source/kube and
// source/gossip) only observe and report claims to a peer.Registry, which
// judges them; plan computes the desired data plane from the registry's
// view (pure); the loop (loop.go), the device's one writer, hands it to
// mesh (WireGuard, addresses, routes) with the pairs' preshared keys from
// package keys, and to nft (the egress NAT), writes the conflist, and
// publishes this node's annotations and condition. Package netpol is the
// NetworkPolicy controller. http.go and status.go serve health, metrics,
// the peers and the status.
package agent
