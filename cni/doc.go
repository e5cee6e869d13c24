// Package cni is weft's CNI plugin: it attaches a pod sandbox with a veth
// pair and an address per family from the node's pod CIDRs (package ipam),
// routes the pod's /32 and /128 on the host, and answers DEL, CHECK, GC and
// STATUS as CNI 1.1 requires. It configures only the sandbox and its host
// veth; the mesh, anti-spoofing rules and the conflist belong to the agent.
package cni
