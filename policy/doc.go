// Package policy owns weft's nftables table (inet weft), programmed through
// knftables: anti-spoofing for pod veths, egress NAT, and keeping WireGuard's
// transport out of conntrack. It also holds the NetworkPolicy compiler
// (Compile, pure and table-tested), which is not yet wired to the agent or to
// nftables. It writes only its own table.
package policy
