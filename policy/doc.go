// Package policy compiles Kubernetes NetworkPolicy into what each local
// pod may send and receive (Compile), and holds the Desired state the nft
// package programs. It is pure: it reads API types only, never a client or
// nftables (a test enforces it).
package policy
