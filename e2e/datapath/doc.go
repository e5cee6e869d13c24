// Package datapath tests the mesh in the lab: pods reaching pods, paths
// (encrypted, direct, fallbacks), dormancy, discovery, restarts, streams
// across changes, captures that see only ciphertext, egress and Peer objects.
package datapath
