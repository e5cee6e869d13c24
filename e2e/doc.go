// Package e2e holds weft's lab tests: real weft-agent binaries in network
// namespaces built by internal/netlab, checked from outside the way an
// operator would (ping, captures, wg show, the HTTP API). They need root.
package e2e
