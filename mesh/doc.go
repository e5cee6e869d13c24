// Package mesh owns weft's data plane on one node: the WireGuard private key,
// the persistent TUN device driven by wireguard-go in process, its UAPI socket,
// the peers configured through wgctrl, and the addresses and routes on the
// tunnel link. It applies a desired state handed to it and changes only the
// difference; it never decides which peers a node should have.
package mesh
