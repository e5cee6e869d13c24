// Package pods tests the CNI plugin as runtimes call it (libcni): ADD, DEL,
// CHECK, GC and STATUS, addresses never reused, and pods reaching each other.
package pods
