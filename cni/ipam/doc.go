// Package ipam hands out pod addresses from a node's pod CIDRs. Each
// reservation is a file named by the address, created atomically under an
// exclusive file lock, so a crash at any instant can leak a reservation (GC
// removes it) but never hand one address out twice. Allocation continues
// after the last address handed out, so a freed address is not reused at once.
package ipam
