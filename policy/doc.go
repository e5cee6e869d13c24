// Package policy owns weft's nftables table (inet weft), programmed through
// knftables. Today it holds the anti-spoofing rule for pod veths; the
// NetworkPolicy compiler will live here too. It writes only its own table.
package policy
