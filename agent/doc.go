// Package agent is weft's node agent: the composition root that builds the
// rooms and owns the loop. Sources (packages source/kube and
// source/gossip) only observe and report claims to a peer.Registry, which
// judges them; plan computes the desired data plane from the registry's
// view (pure); the loop (loop.go), the device's one writer, hands it to
// mesh (WireGuard, addresses, routes) with the pairs' preshared keys from
// package keys, and to nft (the egress NAT), writes the conflist, and
// publishes this node's annotations and condition. Package netpol is the
// NetworkPolicy controller. The agent's configuration (flags) is package
// agent/config; its HTTP API is agent/httpapi, reading the agent through a
// view (status.go); the DaemonSet's helper commands are agent/install.
package agent
