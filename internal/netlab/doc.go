// Package netlab builds weft test clusters out of network namespaces on one
// machine: an underlay bridge in a namespace of its own, node namespaces
// attached to it by veth, and processes run inside a node with their own
// state, run and CNI directories. Every object carries a per-run prefix and is
// removed on Close, and Sweep removes what a crashed run left. The lab adds
// nothing to the root namespace (no link, route or NAT) and has no way out.
package netlab
